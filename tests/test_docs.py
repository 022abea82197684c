"""What the documentation tells a newcomer to type works as written."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def fenced_command(page: Path, starts: str) -> str:
    """The one line of a fenced block on `page` that starts with `starts`."""
    (line,) = [line for line in page.read_text().splitlines() if line.startswith(starts)]
    return line


def test_the_reset_of_the_demo_leaves_nothing_behind(tmp_path):
    clone = tmp_path / "f2git"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    course = clone / "examples" / "demo-course"
    (course / "week2.md").write_text("# Week 2\n")  # what the quick start asks you to do
    (course / "new folder").mkdir()
    (course / "new folder" / "notes.txt").write_text("x")
    data = next(course.rglob("*.csv"))
    data.write_text(data.read_text() + "2026-01-01,3.5\n")
    (clone / "var" / "demo" / "repos").mkdir(parents=True)
    (clone / "var" / "demo-student" / "demo").mkdir(parents=True)
    reset = fenced_command(DOCS / "quickstart.md", "git checkout")
    subprocess.run(reset, shell=True, cwd=clone, check=True)
    status = subprocess.run(["git", "status", "--porcelain", "--ignored", "--", "examples", "var"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "" and not (clone / "var").exists()


def test_the_install_page_names_the_wheel_make_dist_builds():
    from f2git import __version__ as version  # the one place the version is written
    line = fenced_command(DOCS / "admins" / "install.md", "make dist")
    (wheel,) = re.findall(r"dist/(f2git-[^'\[ ]+\.whl)", line)
    assert wheel == f"f2git-{version}-py3-none-any.whl"


def test_every_page_is_reachable_from_the_site():
    """Each Markdown page is in a table of contents (the build also fails on one that is not)."""
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    listed = {"index"}
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        for block in re.findall(r"```\{toctree\}\n(.*?)```", text, re.S):
            for entry in block.splitlines():
                entry = entry.strip()
                if entry and not entry.startswith(":"):
                    base = Path("/") if entry.startswith("/") else Path("/") / page.relative_to(DOCS).parent
                    listed.add((base / entry.lstrip("/")).as_posix().lstrip("/"))
    assert pages - listed == set()


def test_the_readme_stays_short_and_links_into_the_site():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert len(readme.splitlines()) < 120
    for target in re.findall(r"\]\((docs/[^)#]+)\)", readme):
        assert (ROOT / target).is_file(), target
