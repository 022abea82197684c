"""The front door in Chromium through a real JupyterHub: students sign in at the hub, open a door
link (`<hub>/services/f2git/open/…`), and either land in JupyterLab with the course files or read
f2git's page with the reason — then, where it applies, Continue to JupyterLab.

f2git runs in this process as an external hub service (`f2git hub-config --external`), so the
test can hold a course the way a rollback does. The pages are saved as the docs' screenshots
(docs/_static/screenshots/door-*.png).
"""
from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from f2git import holds, release
from f2git.hubconfig import render
from tests.browserhelpers import chromium
from tests.hubhelpers import CHP, Hub, hub_oauth_in_process
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer, config_factory

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "_static" / "screenshots"
GROUPS = {"cs101-students": {"users": ["ana"]}}
SERVICE = "/services/f2git"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    work = tmp_path_factory.mktemp("door-hub")
    cs101 = SourceFolder(work / "cs101")
    cs101.write("README.md", "# CS 101\n")
    cs101.write("week1/intro.ipynb", '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    flaky = SourceFolder(work / "flaky")
    flaky.write("notes.md", "# Notes\n")
    algebra = SourceFolder(work / "algebra")
    algebra.write("sheet1.md", "# Sheet 1\n")
    courses = {"cs101": {"source": "local", "path": str(cs101.path), "schedule": 0, "groups": ["cs101-students"]},
               "stats": {"source": "local", "path": str(flaky.path), "schedule": 0},
               "algebra": {"source": "local", "path": str(algebra.path), "schedule": 0}}
    token = secrets.token_hex(16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("F2GIT_HUB_TOKEN", token)
        f2git = RunningServer(config_factory(work, courses, auth="jupyterhub", refresh_ttl=0,
                                             click_window=0))
        f2git.config.hub.pullhook = True
        hub = Hub(work / "jupyterhub", render(f2git.config, external=True), groups=GROUPS)
        f2git.config.hub.url = hub.url
        # the hub waits for its external services as it starts: f2git is up first, as in a deployment
        for name, value in {"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api",
                            "JUPYTERHUB_SERVICE_NAME": "f2git", "JUPYTERHUB_SERVICE_PREFIX": f"{SERVICE}/",
                            "JUPYTERHUB_CLIENT_ID": "service-f2git", "JUPYTERHUB_BASE_URL": "/",
                            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{SERVICE}/oauth_callback"}.items():
            patch.setenv(name, value)
        with hub_oauth_in_process(), f2git, hub:
            hub.f2git = f2git
            hub.flaky = flaky
            hub.algebra = algebra
            hub.wait_for_url(f"{hub.url}{SERVICE}/healthz", "f2git behind the hub's proxy")
            hub.start_user("ana")  # bob is created when he signs in: he never gets a server of his own here
            yield hub


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def signed_in(browser: Browser, hub: Hub, user: str, locale: str = "en-GB") -> Page:
    """A fresh browser of `user`, signed in at the hub's login page."""
    context = browser.new_context(base_url=hub.url, locale=locale, viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.goto("/hub/login")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill("any")
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/(hub/home|hub/spawn-pending/.*|user/.*)"), timeout=60_000)
    return page


def refresh(hub: Hub, course: str) -> None:
    """A sync now, in the server's loop, as "Refresh now" runs it."""
    server = hub.f2git
    sync = server.server.refresher.refresh(server.config.courses[course])
    assert asyncio.run_coroutine_threadsafe(sync, server.loop).result(timeout=120).ok


def in_jupyterlab(page: Page, user: str, course: str, name: str) -> None:
    """The browser reached the user's JupyterLab, which shows the course's file."""
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=120_000)
    expect(page.locator(".jp-DirListing-itemText", has_text=name).first).to_be_visible(timeout=120_000)


def shot(page: Page, name: str) -> None:
    """The page as the docs show it: written into the docs when F2GIT_DOC_SCREENSHOTS=1
    (`F2GIT_DOC_SCREENSHOTS=1 make test`), else taken and dropped, so a test run leaves the tree as it was."""
    if os.environ.get("F2GIT_DOC_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
    else:
        assert page.screenshot()  # the page renders


def test_a_member_goes_straight_through_the_door_into_jupyterlab(browser, hub):
    refresh(hub, "cs101")
    page = signed_in(browser, hub, "ana")
    page.goto(f"{SERVICE}/open/cs101/README.md?app=lab")
    in_jupyterlab(page, "ana", "cs101", "README.md")
    assert (hub.work / "home" / "ana" / "cs101" / "README.md").read_text() == "# CS 101\n"
    page.context.close()


@pytest.mark.parametrize("locale, lang", [("en-GB", "en"), ("de-DE", "de")])
def test_a_student_outside_the_course_reads_why_on_f2gits_page(browser, hub, locale, lang):
    page = signed_in(browser, hub, "bob", locale)
    page.goto(f"{SERVICE}/open/cs101")
    heading = {"en": "You are not in this course", "de": "Sie sind nicht in diesem Kurs"}[lang]
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.locator(".reason")).to_contain_text("you (bob) are not in course 'cs101'")
    expect(page.locator("#continue")).to_have_count(0)
    shot(page, f"door-refused-{lang}")
    assert not (hub.work / "home" / "bob" / "cs101").exists()
    page.context.close()


@pytest.mark.parametrize("locale, lang", [("en-GB", "en"), ("de-DE", "de")])
def test_a_renamed_courses_link_says_so(browser, hub, locale, lang):
    page = signed_in(browser, hub, "ana", locale)
    page.goto(f"{SERVICE}/open/cs-101-2025/week1/intro.ipynb")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        {"en": "There is no course with this name", "de": "Einen Kurs mit diesem Namen gibt es nicht"}[lang])
    expect(page.locator("main")).to_contain_text({"en": "renamed", "de": "umbenannt"}[lang])
    expect(page.locator("main")).not_to_contain_text("stats")  # no list of courses
    shot(page, f"door-renamed-{lang}")
    page.context.close()


@pytest.mark.parametrize("locale, lang", [("en-GB", "en"), ("de-DE", "de")])
def test_while_the_source_fails_the_student_reads_the_date_then_continues_to_jupyterlab(browser, hub, locale, lang):
    refresh(hub, "stats")
    keep = hub.work / "flaky-kept"
    shutil.copytree(hub.flaky.path, keep, dirs_exist_ok=True)
    shutil.rmtree(hub.flaky.path)  # the source fails from now on
    try:
        page = signed_in(browser, hub, "ana", locale)
        page.goto(f"{SERVICE}/open/stats/notes.md")
        expect(page.get_by_role("heading", level=1)).to_have_text(
            {"en": "The newest course files could not be fetched",
             "de": "Die neuesten Kursdateien konnten nicht abgerufen werden"}[lang])
        expect(page.locator("main")).to_contain_text({"en": "You get the snapshot of", "de": "Sie erhalten den Stand vom"}[lang])
        shot(page, f"door-failing-{lang}")
        page.locator("#continue").click()
        in_jupyterlab(page, "ana", "stats", "notes.md")
        if lang == "en":
            expect(page.locator(".jp-FileEditor .cm-content")).to_contain_text("# Notes", timeout=60_000)
            news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt, not ours
            if news.count():
                news.first.click()
                expect(news).to_have_count(0)
            shot(page, "door-jupyterlab")
        page.context.close()
    finally:
        shutil.copytree(keep, hub.flaky.path, dirs_exist_ok=True)


@pytest.mark.parametrize("locale, lang", [("en-GB", "en"), ("de-DE", "de")])
def test_a_held_course_says_so_then_continues_to_jupyterlab(browser, hub, locale, lang):
    refresh(hub, "cs101")
    holds.hold(hub.f2git.config, "cs101", {"reason": "rolled back to last week's notebooks"})
    try:
        page = signed_in(browser, hub, "ana", locale)
        page.goto(f"{SERVICE}/open/cs101/week1/intro.ipynb")
        expect(page.get_by_role("heading", level=1)).to_have_text(
            {"en": "Your instructor has paused updates of this course",
             "de": "Ihre Lehrperson hat die Aktualisierung dieses Kurses angehalten"}[lang])
        expect(page.locator(".reason")).to_contain_text("rolled back to last week's notebooks")
        shot(page, f"door-held-{lang}")
        page.locator("#continue").click()
        in_jupyterlab(page, "ana", "cs101", "intro.ipynb")
        page.context.close()
    finally:
        holds.resume(hub.f2git.config, "cs101")


@pytest.mark.parametrize("locale, lang", [("en-GB", "en"), ("de-DE", "de")])
def test_after_a_retract_a_student_without_pullhook_reads_what_happened_and_for_whom(browser, hub, locale, lang,
                                                                                       monkeypatch):
    server = hub.f2git
    if not release.rewritten(server.config, "algebra"):
        hub.algebra.write("solutions.md", "# Solutions\n")
        refresh(hub, "algebra")
        release.retract(server.config, server.config.courses["algebra"], ["solutions.md"], who="tina")
        server.call(lambda: server.server.app.settings["f2git_packcache"].drop_course("algebra"))
    monkeypatch.setattr(server.config.hub, "pullhook", False)  # a hub whose image has no pullhook
    page = signed_in(browser, hub, "ana", locale)
    page.goto(f"{SERVICE}/open/algebra/sheet1.md")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        {"en": "Your instructor took back files of this course",
         "de": "Ihre Lehrperson hat Dateien dieses Kurses zurückgenommen"}[lang])
    expect(page.locator("main")).to_contain_text({"en": "If you first opened this course between",
                                                  "de": "zum ersten Mal zwischen"}[lang])
    expect(page.locator("main")).not_to_contain_text("solutions.md")
    assert "backup=true" in page.locator("#fresh").get_attribute("href")
    assert "backup=" not in page.locator("#continue").get_attribute("href")
    shot(page, f"door-retracted-{lang}")
    page.goto(f"{SERVICE}/open/algebra/sheet1.md", wait_until="commit")  # told once: this browser goes on
    page.wait_for_url(re.compile(r"/(hub|user)/"), timeout=60_000)
    page.context.close()
