"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

    python -m tests.test_browser docs/     # writes the docs' dashboard screenshots instead

The course list shows the demo course; "Refresh now" runs to "finished" and shows the new
commit; "Preview release" lists a pending change without committing it; the link builder's
link, copied with its button, is one nbgitpuller accepts and pulls the course with.
"""
from __future__ import annotations

import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from nbgitpuller import GitPuller
from playwright.sync_api import Browser, Page, expect, sync_playwright

from f2git import status
from f2git.store import CourseRepo
from tests.browserhelpers import CHROMIUM, CHROMIUM_ARGS, DEMO, chromium
from tests.repohelpers import SourceFolder, isolated_git
from tests.serverhelpers import RunningServer, config_factory

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "demo-course")
    for file in sorted(p for p in DEMO.rglob("*") if p.is_file()):
        folder.write(file.relative_to(DEMO).as_posix(), file.read_text())
    return folder


@pytest.fixture
def server(tmp_path, source):
    make = config_factory(tmp_path, {"demo": {"source": "local", "path": str(source.path), "schedule": 600}})
    with RunningServer(make) as running:
        status, body = running.post_json("/api/courses/demo/refresh")  # the first snapshot
        assert status == 200 and body["ok"], body
        yield running


@pytest.fixture
def page(browser: Browser, server):
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    yield tab
    context.close()
    assert errors == []  # no script errors, no CSP violations


def head(server: RunningServer) -> str | None:
    return CourseRepo.for_course(server.config, "demo").head()


def test_course_list_shows_the_demo_course(page: Page, server):
    page.goto("/")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="demo"))
    expect(row).to_contain_text("local folder")
    expect(row).to_contain_text("OK")
    expect(row).to_contain_text(head(server)[:10])
    page.get_by_role("link", name="demo").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("demo")


def test_refresh_now_reaches_finished_and_shows_the_new_commit(page: Page, server, source):
    page.goto("/courses/demo")
    before = head(server)
    expect(page.locator("#commit")).to_have_text(before)
    source.write("week2/02-loops.ipynb", '{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}\n')
    button = page.get_by_role("button", name="Refresh now")
    button.focus()
    page.keyboard.press("Enter")  # works from the keyboard
    expect(page.get_by_role("status").first).to_contain_text("Finished: 1 added, 0 changed, 0 deleted",
                                                            timeout=30_000)
    after = head(server)
    assert after != before
    expect(page.locator("#commit")).to_have_text(after)


def test_after_a_refresh_the_page_shows_the_new_state_without_a_reload(page: Page, server, source):
    page.goto("/courses/demo")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    last_check = page.locator("#facts dd").nth(2).inner_text()
    source.write("week2/02-loops.ipynb", '{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}\n')
    page.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_role("status").first).to_contain_text("Finished: 1 added", timeout=30_000)
    expect(page.locator(".history li").first).to_contain_text("1 added")
    expect(page.locator(".history li").first).to_contain_text("week2/02-loops.ipynb")
    expect(page.locator('.tree li.file[data-path="week2/02-loops.ipynb"]')).to_be_attached()
    expect(page.locator("#facts")).to_contain_text(head(server))
    assert page.evaluate("window.sameDocument") is True
    # the last check moved on: the page shows the time of the refresh that just ran
    record = status.read(server.config, "demo")
    shown = page.locator("#facts dd time").nth(0).get_attribute("datetime")
    assert shown == datetime.fromtimestamp(record.last_check, timezone.utc).isoformat(timespec="seconds")
    assert last_check  # and it was shown before too

    shutil.rmtree(source.path)  # the next refresh fails: the health line says so, still without a reload
    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator("#health .health")).to_have_class(re.compile("health-failing"), timeout=30_000)
    expect(page.locator("#health")).to_contain_text("students still get the snapshot of")
    assert page.evaluate("window.sameDocument") is True


def test_preview_lists_a_pending_change_without_committing(page: Page, server, source):
    before = head(server)
    source.write("week1/solutions.ipynb", "{}\n")
    page.goto("/courses/demo")
    page.get_by_role("button", name="Preview release").click()
    expect(page.get_by_role("heading", name="Would add")).to_be_visible()
    expect(page.locator(".preview-added")).to_contain_text("week1/solutions.ipynb")
    assert head(server) == before


def test_link_builder_finds_a_file_in_the_tree_and_its_link_is_one_nbgitpuller_pulls(page: Page, server, tmp_path,
                                                                                     monkeypatch):
    page.goto("/courses/demo")
    page.get_by_label("Find a file").fill("welcome")
    expect(page.get_by_role("status").filter(has_text="matching file")).to_have_text("1 matching file.")
    expect(page.locator(".tree li.file:visible")).to_have_count(1)
    page.get_by_role("link", name="01-welcome.ipynb").click()
    link_box = page.get_by_label("nbgitpuller link")
    expect(link_box).to_have_value(re.compile(re.escape("urlpath=lab%2Ftree%2Fdemo%2Fweek1%2F01-welcome.ipynb")))
    page.get_by_label("Open in").select_option(label="Jupyter Notebook")
    expect(link_box).to_have_value(re.compile(re.escape("urlpath=tree%2Fdemo%2Fweek1%2F01-welcome.ipynb")))
    expect(page.locator("#try-link")).to_have_attribute("href", link_box.input_value())
    door_box = page.get_by_label("Student link (through f2git's door)")
    expect(door_box).to_have_value(f"{server.url}/open/demo/week1/01-welcome.ipynb?app=notebook")
    page.get_by_role("button", name="Copy Markdown").click()
    expect(page.locator(".copy-status")).to_have_text("Copied the Markdown.")
    assert page.evaluate("navigator.clipboard.readText()") == f"[01-welcome.ipynb (demo)]({door_box.input_value()})"
    page.get_by_label("Open in").select_option(label="JupyterLab")
    # the box is filled by the server's answer: copy what it shows once it shows the new pick
    expect(link_box).to_have_value(re.compile(re.escape("urlpath=lab%2Ftree%2Fdemo%2Fweek1%2F01-welcome.ipynb")))
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator(".copy-status")).to_have_text("Copied the link.")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == link_box.input_value()
    page.reload()  # the address bar kept the pick
    expect(page.get_by_label("nbgitpuller link")).to_have_value(link)

    parts = urlsplit(link)
    assert parts.path == "/hub/user-redirect/git-pull"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["repo"] == f"{server.url}/git/demo" and query["branch"] == "main"
    # nbgitpuller's handler clones into the repo URL's last segment and opens urlpath
    isolated_git(monkeypatch)
    home = tmp_path / "home"
    target = home / query["repo"].rstrip("/").rsplit("/", 1)[-1]
    for _ in GitPuller(query["repo"], str(target), branch=query["branch"], depth=1).pull():
        pass
    opened = unquote(query["urlpath"]).removeprefix("lab/tree/")
    assert (home / opened).read_text() == (DEMO / "week1/01-welcome.ipynb").read_text()


def test_the_file_tree_of_a_large_course_is_searchable(browser: Browser, tmp_path):
    source = SourceFolder(tmp_path / "big")
    for week in range(30):
        for n in range(50):  # 1500 files, as a real course has
            source.write(f"week{week:02d}/exercise{n:02d}.ipynb", "{}\n")
    make = config_factory(tmp_path, {"big": {"source": "local", "path": str(source.path), "schedule": 0}})
    with RunningServer(make) as server:
        assert server.post_json("/api/courses/big/refresh")[1]["ok"]
        tab = browser.new_page(base_url=server.url)
        tab.goto("/courses/big")
        expect(tab.locator("#files")).to_contain_text("1500 files")
        expect(tab.locator(".tree li.file:visible")).to_have_count(0)  # folders start closed
        tab.get_by_label("Find a file").fill("week17 exercise4")
        expect(tab.locator(".tree li.file:visible")).to_have_count(10)
        tab.get_by_role("link", name="exercise42.ipynb").click()
        expect(tab.get_by_label("nbgitpuller link")).to_have_value(re.compile("week17%2Fexercise42.ipynb"))
        tab.close()


@pytest.mark.parametrize("path", ["/", "/courses/demo"])
def test_pages_fit_a_phone_screen(browser: Browser, server, path):
    context = browser.new_context(base_url=server.url, viewport=PHONE, is_mobile=True)
    tab = context.new_page()
    tab.goto(path)
    overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    context.close()
    assert overflow <= 0


# -- screenshots for the docs -----------------------------------------------------------------------

def take_screenshots(folder: Path) -> None:
    """The dashboard of a demo with an up-to-date, a failing and a new course, desktop and phone."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="f2git-shots-"))
    try:
        demo = SourceFolder(work / "demo-course")
        for file in sorted(p for p in DEMO.rglob("*") if p.is_file()):
            demo.write(file.relative_to(DEMO).as_posix(), file.read_text())
        stats = SourceFolder(work / "stats-course")
        stats.write("lecture1.ipynb", "{}\n")
        demo.write("data/measurements.csv", "x" * 1_500_000)  # over the limit below: shown as skipped
        courses = {"demo": {"source": "local", "path": str(demo.path), "schedule": 600, "max_file_size": 1_000_000},
                   "stats": {"source": "local", "path": str(stats.path), "schedule": 600},
                   "ml-seminar": {"source": "local", "path": str(work / "ml"), "schedule": 0}}
        with RunningServer(config_factory(work, courses)) as server, sync_playwright() as playwright:
            server.post_json("/api/courses/demo/refresh")
            demo.write("week2/02-loops.ipynb", "{}\n")
            server.post_json("/api/courses/demo/refresh")
            server.post_json("/api/courses/stats/refresh")
            shutil.rmtree(stats.path)  # the folder went away: the course fails, students keep the snapshot
            server.post_json("/api/courses/stats/refresh")
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            desktop = chromium.new_page(viewport={"width": 1280, "height": 640}, base_url=server.url)
            desktop.goto("/")
            desktop.screenshot(path=str(folder / "screenshot.png"), full_page=True)
            phone = chromium.new_page(viewport=PHONE, is_mobile=True, base_url=server.url)
            phone.goto("/courses/demo?path=week1/01-welcome.ipynb#link-title")  # the link builder
            phone.screenshot(path=str(folder / "screenshot-phone.png"))
            chromium.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    take_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
