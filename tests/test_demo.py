"""`make run` end to end in Chromium: the printed link opens the course in JupyterLab, an edit
made in JupyterLab survives the next click, an instructor's change arrives, and Ctrl-C stops
f2git and JupyterLab together.

Runs `python -m f2git.demo` (what `make run` runs) against a copy of the demo course.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browserhelpers import CHROMIUM, CHROMIUM_ARGS, DEMO
from tests.serveprocess import descendants, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen, timeout: float = 150) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert process.poll() is None, f"the demo exited ({process.returncode}):\n{log.read_text()}"
        time.sleep(0.2)  # another process's output: nothing to await
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{log.read_text()}")


@pytest.fixture
def demo(tmp_path):
    source = tmp_path / "demo-course"
    shutil.copytree(DEMO, source)
    config = tmp_path / "config" / "demo.toml"
    config.parent.mkdir()
    config.write_text((ROOT / "config" / "demo.toml").read_text().replace("../examples/demo-course", str(source)))
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "f2git.demo", "--config", str(config),
                                    "--port", str(free_port()), "--jupyter-port", str(free_port())],
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        link = wait_for_line(log, r"open this link.*\n\s+(http://\S+)", process).group(1)
        yield process, link, source, tmp_path / "var" / "demo-student" / "demo", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page()
        browser.close()


def open_in_lab(page: Page, link: str) -> None:
    page.goto(link)
    page.wait_for_url(re.compile(r"/lab/tree/demo"), timeout=90_000)
    expect(page.locator(".jp-DirListing-content")).to_contain_text("README.md", timeout=90_000)


def test_make_run_link_opens_jupyterlab_keeps_the_edit_brings_the_change_and_stops_together(demo, page):
    process, link, source, student, log = demo
    # every link `make run` prints opens in a fresh browser: f2git's own banner carries the token too
    banner = wait_for_line(log, r"nbgitpuller link:\s+(\S+)", process).group(1)
    assert banner == link and "token=" in link
    open_in_lab(page, banner)
    assert (student / "week1" / "01-welcome.ipynb").is_file()

    # the student edits README.md in JupyterLab's editor and saves it
    page.locator(".jp-DirListing-item", has_text="README.md").dblclick()
    editor = page.locator(".jp-FileEditor .cm-content")
    expect(editor).to_be_visible(timeout=30_000)
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nMy notes from the lab.\n")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while "My notes from the lab." not in (student / "README.md").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # JupyterLab saves through its contents API: wait for the file
    assert "My notes from the lab." in (student / "README.md").read_text()

    # the instructor changes the course's source folder; the student clicks the same link again
    (source / "week2").mkdir()
    (source / "week2" / "loops.md").write_text("# Loops\n")
    (source / "data" / "temperatures.csv").write_text("day,temp\n1,20\n")
    open_in_lab(page, link)
    expect(page.locator(".jp-DirListing-content")).to_contain_text("week2", timeout=30_000)
    expect(page.get_by_text("get notified about official Jupyter news")).to_have_count(0)  # no prompt on top
    assert (student / "week2" / "loops.md").read_text() == "# Loops\n"
    assert (student / "data" / "temperatures.csv").read_text() == "day,temp\n1,20\n"
    assert "My notes from the lab." in (student / "README.md").read_text()

    # a fresh browser opens the dashboard link `make run` printed; its "Try this link" opens JupyterLab
    dashboard = wait_for_line(log, r"dashboard:\s+(\S+)", process).group(1)
    assert "demo=" in dashboard
    fresh = page.context.browser.new_context()
    owner = fresh.new_page()
    owner.goto(dashboard)
    owner.goto(re.sub(r"/\?demo=.*$", "/courses/demo", dashboard))
    with fresh.expect_page() as opened:
        owner.locator("#try-link").click()
    tab = opened.value
    tab.wait_for_url(re.compile(r"/lab/tree/demo"), timeout=90_000)  # no token asked for
    expect(tab.locator(".jp-DirListing-content")).to_contain_text("week2", timeout=90_000)
    fresh.close()

    # Ctrl-C: both processes end
    children = descendants(process.pid)
    assert len(children) >= 2
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "f2git or JupyterLab outlived Ctrl-C"
