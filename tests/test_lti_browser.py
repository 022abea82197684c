"""LTI in Chromium: the picker inside the LMS's frame (and refused inside a foreign origin's),
and a learner's launch that lands on the hub's nbgitpuller link."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from f2git.config import parse
from tests.browserhelpers import CHROMIUM, CHROMIUM_ARGS
from tests.ltiplatform import LEARNER, LtiPlatform, Message, canvas_instructor_picker
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer
from tests.test_browser import browser as chromium  # noqa: F401  (Debian's Chromium, once per module)


@pytest.fixture
def platform():
    with LtiPlatform() as running:
        yield running


@pytest.fixture
def tool(tmp_path, platform):
    source = SourceFolder(tmp_path / "source")
    source.write("week1/intro.ipynb", '{"cells": []}\n')
    source.write("week2/lab.ipynb", '{"cells": []}\n')

    def make(port):
        data = {"server": {"data_dir": str(tmp_path / "data"), "port": port, "click_window": 0,
                           "public_url": f"http://127.0.0.1:{port}"},
                "hub": {"url": platform.url},  # the platform's /hub/ stands in for the hub
                "lti": {"key_file": str(tmp_path / "lti-key.pem"), "platforms": [platform.section()]},
                "courses": {"cs101": {"source": "local", "path": str(source.path), "schedule": 0,
                                      "lti_contexts": ["ctx-cs101"]}}}
        return parse(data, tmp_path / "f2git.toml", {})

    with RunningServer(make) as server:
        platform.connect(server.url)
        server.post_json("/api/courses/cs101/refresh")
        yield server


def test_picker_in_the_lms_frame_returns_the_chosen_file(chromium, tool, platform):
    context = chromium.new_context()
    page = context.new_page()
    hint = platform.add(canvas_instructor_picker("teach-1", "ctx-cs101"))
    page.goto(f"{platform.url}/course?hint={hint}")
    picker = page.frame_locator("#tool")
    expect(picker.get_by_role("heading", name="Add course files")).to_be_visible()
    picker.locator("#search").fill("lab")
    expect(picker.locator('li[data-path="week1/intro.ipynb"]')).to_be_hidden()
    picker.locator('input[value="week2/lab.ipynb"]').check()
    picker.get_by_role("button", name="Add to the course").click()
    expect(picker.locator("#saved")).to_have_text("Content saved in the LMS.")  # the platform verified it
    (item,) = platform.returned[-1]
    assert item["custom"]["f2git_path"] == "week2/lab.ipynb" and item["window"] == {"targetName": "_blank"}
    context.close()


def test_picker_framed_by_a_foreign_origin_is_blocked(chromium, tool, platform):
    with LtiPlatform() as evil:  # an origin f2git does not know, framing the LMS page that frames f2git
        context = chromium.new_context()
        page = context.new_page()
        hint = platform.add(canvas_instructor_picker("teach-1", "ctx-cs101"))
        with page.expect_console_message(lambda message: "frame-ancestors" in message.text) as refused:
            page.goto(f"{evil.url}/course?src={platform.url}/course%3Fhint%3D{hint}")
        assert tool.url in refused.value.text  # f2git's page refused, not the LMS's
        lms = page.frame_locator("#tool")
        expect(lms.get_by_role("heading", name="LMS course")).to_be_visible()
        assert not any("Add course files" in frame.content() for frame in page.frames
                       if not frame.url.startswith("chrome-error"))
        context.close()


def test_a_learners_launch_lands_on_the_hubs_nbgitpuller_link(chromium, tool, platform):
    context = chromium.new_context()
    page = context.new_page()
    hint = platform.add(Message("stud-1", LEARNER, custom={"f2git_course": "cs101",
                                                           "f2git_path": "week1/intro.ipynb", "f2git_app": "lab"}))
    page.goto(platform.login_initiation(hint))
    expect(page.locator("#hub")).to_have_text("the hub")
    landed = urlsplit(page.url)
    assert landed.path == "/hub/user-redirect/git-pull"
    query = parse_qs(landed.query)
    assert query["repo"] == [tool.url + "/git/cs101"] and query["urlpath"] == ["lab/tree/cs101/week1/intro.ipynb"]
    context.close()


def test_a_launch_works_with_third_party_cookies_blocked_through_platform_storage(chromium, tool, platform):
    # a Chromium of its own: a response Playwright fulfils counts as a public address, and Chromium's local
    # network checks would then stop the frame's next step to 127.0.0.1 (a test artefact, not f2git's)
    own = chromium.browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"])
    try:
        context = own.new_context()

        def drop_cookies(route):  # as a browser that blocks third-party cookies: f2git's login cookie never lands
            response = route.fetch(max_redirects=0)
            headers = {k: v for k, v in response.headers.items() if k.lower() != "set-cookie"}
            route.fulfill(response=response, headers=headers)

        context.route(f"{tool.url}/lti/login**", drop_cookies)
        page = context.new_page()
        hint = platform.add(Message("stud-1", LEARNER, storage_target="_parent",
                                    custom={"f2git_course": "cs101", "f2git_path": "week1/intro.ipynb"}))
        page.goto(f"{platform.url}/course?hint={hint}")
        expect(page.frame_locator("#tool").locator("#hub")).to_have_text("the hub")
        assert context.cookies(tool.url) == []
    finally:
        own.close()
