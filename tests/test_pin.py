"""Pin: a snapshot served as branch release/NAME beside main; nbgitpuller links with that branch
work on the first and later clicks, later snapshots do not move it, a retract rewrites it."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from f2git.cli import main
from f2git.store import CourseRepo
from tests.repohelpers import SourceFolder, Student, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import serve_local, settled

COURSE = "cs101"


def remote_refs(url: str, version: int = 2) -> dict[str, str]:
    out = git("-c", f"protocol.version={version}", "ls-remote", url).stdout.decode()
    return {ref: oid for oid, ref in (line.split("\t") for line in out.splitlines())}


@pytest.fixture
def course(tmp_path):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("README.md", "# CS 101\n")
    instructor.write("exam/task.ipynb", "exam version\n")
    with serve_local(tmp_path, instructor.path) as server:
        yield instructor, server


def test_a_pinned_release_is_served_beside_main_and_stays_where_it_was_pinned(course, tmp_path):
    instructor, server = course
    url = server.git_url(COURSE)
    assert remote_refs(url).keys() == {"HEAD", "refs/heads/main"}  # the first click syncs
    repo = CourseRepo.for_course(server.config, COURSE)
    exam = repo.head()
    status, answer = server.post_json(f"/api/courses/{COURSE}/pin", {"name": "exam-2026"})
    assert status == 200 and answer == {"course": COURSE, "branch": "release/exam-2026", "commit": exam}
    for version in (0, 2):  # advertised right away: the cached ref advertisement follows the pins
        assert remote_refs(url, version)["refs/heads/release/exam-2026"] == exam
    # the dashboard's link builder offers the pin and links it
    page = requests.get(server.url + f"/courses/{COURSE}").text
    assert '<option value="release/exam-2026">pinned release/exam-2026</option>' in page
    built = requests.get(server.url + f"/courses/{COURSE}/link", params={"branch": "release/exam-2026",
                                                                       "path": "exam/task.ipynb"}).json()
    assert parse_qs(urlsplit(built["link"]).query)["branch"] == ["release/exam-2026"]
    refused = requests.get(server.url + f"/courses/{COURSE}/link", params={"branch": "release/nope"})
    assert refused.status_code == 400
    student = Student(url, tmp_path / "home" / COURSE, branch="release/exam-2026")
    student.click()
    student.write("exam/task.ipynb", "exam version\nmy answer\n")
    instructor.write("exam/task.ipynb", "exam version, with the solution\n")  # main moves on
    instructor.write("week9/next.ipynb", "{}\n")
    student.click()  # a later click on the pinned link: nothing of main's new snapshot
    assert remote_refs(url)["refs/heads/release/exam-2026"] == exam != repo.head()
    assert student.read("exam/task.ipynb") == "exam version\nmy answer\n" and not student.exists("week9/next.ipynb")
    assert git("rev-parse", "origin/release/exam-2026", cwd=student.path).stdout.decode().strip() == exam
    # a retract rewrites the pin with main
    status, retracted = server.post_json(f"/api/courses/{COURSE}/retract", {"paths": ["exam/task.ipynb"]})
    assert status == 200
    settled(server)
    pinned = remote_refs(url)["refs/heads/release/exam-2026"]
    assert pinned != exam and "exam/task.ipynb" not in repo.files(pinned) and "README.md" in repo.files(pinned)
    # removed: no longer advertised, and its link's next click says the branch is gone
    status, answer = server.post_json(f"/api/courses/{COURSE}/pin", {"name": "exam-2026", "remove": True})
    assert status == 200 and "refs/heads/release/exam-2026" not in remote_refs(url)
    with pytest.raises(Exception):
        student.click()


def test_pin_names_commits_and_links_are_checked(course, tmp_path, capsys):
    instructor, server = course
    url = server.git_url(COURSE)
    git("clone", "-q", "--depth", "1", url, tmp_path / "c")
    for name in ("../main", "Exam", "a b", "x.lock", ""):
        status, answer = server.post_json(f"/api/courses/{COURSE}/pin", {"name": name})
        assert status == 400 and "not a pin name" in answer["error"], name
    status, answer = server.post_json(f"/api/courses/{COURSE}/pin", {"name": "x", "commit": "1" * 40})
    assert status == 404 and "not in the history students are served" in answer["error"]
    status, answer = server.post_json(f"/api/courses/{COURSE}/pin", {"name": "x", "remove": True})
    assert status == 404
    # the command line pins too, and `f2git link --branch` links the pin (and only a pin)
    config_file = tmp_path / "cli.toml"
    config_file.write_text(f'[server]\ndata_dir = "{server.config.server.data_dir}"\n[courses.{COURSE}]\n'
                           f'source = "local"\npath = "{instructor.path}"\nschedule = 0\n')
    assert main(["--config", str(config_file), "pin", COURSE, "week1"]) == 0
    assert "release/week1 serves snapshot" in capsys.readouterr().out
    assert "refs/heads/release/week1" in remote_refs(url)  # a pin made by another process: advertised
    assert main(["--config", str(config_file), "link", COURSE, "--branch", "release/week1"]) == 0
    link = capsys.readouterr().out.strip()
    assert parse_qs(urlsplit(link).query)["branch"] == ["release/week1"]
    assert main(["--config", str(config_file), "link", COURSE, "--branch", "release/nope"]) == 2
    said = capsys.readouterr()
    assert "serves no branch 'release/nope'" in said.out + said.err
    assert main(["--config", str(config_file), "pin", COURSE, "week1", "--remove"]) == 0
    assert "refs/heads/release/week1" not in remote_refs(url)
