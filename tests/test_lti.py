"""f2git as an LTI 1.3 tool, against someone else's platform (lti1p3platform over HTTP):
registration, verified login and launch, students' launches, instructors' launches, deep linking."""
from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from f2git.config import parse
from tests.ltiplatform import (INSTRUCTOR, LEARNER, Browser, LtiPlatform, Message, canvas_instructor_picker,
                               canvas_learner, form_of, moodle_instructor_picker, moodle_learner)
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer

HUB = "https://hub.example.edu"


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "source")
    folder.write("week1/intro.ipynb", '{"cells": []}\n')
    folder.write("week2/lab.ipynb", '{"cells": [1]}\n')
    folder.write("syllabus.md", "# CS 101\n")
    return folder


@pytest.fixture
def platform():
    with LtiPlatform() as running:
        yield running


def make_config(tmp_path, source, platform, *, lti=None, platform_overrides=None, courses=None):
    def make(port):
        data = {"server": {"data_dir": str(tmp_path / "data"), "port": port, "click_window": 0,
                           "public_url": f"http://127.0.0.1:{port}"},
                "hub": {"url": HUB},
                "lti": {"key_file": str(tmp_path / "lti-key.pem"), **(lti or {}),
                        "platforms": [platform.section(**(platform_overrides or {}))]},
                "courses": courses or {
                    "cs101": {"source": "local", "path": str(source.path), "schedule": 0,
                              "lti_contexts": ["ctx-cs101"]},
                    "bio": {"source": "local", "path": str(source.path), "schedule": 0,
                            "lti_contexts": ["ctx-bio"]}}}
        return parse(data, tmp_path / "f2git.toml", {})
    return make


@pytest.fixture
def tool(tmp_path, source, platform):
    with RunningServer(make_config(tmp_path, source, platform)) as server:
        platform.connect(server.url)
        server.post_json("/api/courses/cs101/refresh")
        yield server


def refusal(response: requests.Response) -> str:
    """The words of a refusal page; it must be an HTML page, never a redirect."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "Location" not in response.headers
    return page_words(response)


def page_words(response: requests.Response) -> str:
    """What a person reads on one of f2git's pages for students: title, sentences, buttons."""
    assert response.headers["Content-Type"].startswith("text/html")
    main = re.search(r"<main[^>]*>(.*?)</main>", response.text, re.S).group(1)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", main).split()))


def git_pull_target(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == HUB and parts.path == "/hub/user-redirect/git-pull", location
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


# -- 1. registration --

def test_config_and_jwks_give_the_admin_what_to_paste(tool, tmp_path):
    config = requests.get(tool.url + "/lti/config").json()
    assert config["login_url"] == tool.url + "/lti/login"
    assert config["launch_url"] == config["deep_linking_url"] == tool.url + "/lti/launch"
    assert config["redirect_uris"] == [tool.url + "/lti/launch"]
    canvas = config["canvas"]
    assert canvas["oidc_initiation_url"] == tool.url + "/lti/login" and canvas["public_jwk_url"] == tool.url + "/lti/jwks"
    placements = {p["placement"]: p for p in canvas["extensions"][0]["settings"]["placements"]}
    assert {"editor_button", "link_selection", "assignment_selection", "course_navigation"} <= set(placements)
    assert placements["link_selection"]["message_type"] == "LtiDeepLinkingRequest"
    assert placements["course_navigation"]["message_type"] == "LtiResourceLinkRequest"
    assert canvas["custom_fields"]["canvas_course_id"] == "$Canvas.course.id"
    keys = requests.get(config["jwks_url"]).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["kid"] and k["alg"] == "RS256" and "d" not in k for k in keys)
    assert (tmp_path / "lti-key.pem").stat().st_mode & 0o077 == 0


# -- 2 and 4. verified launches of students --

def test_learner_launch_from_lti1p3platform_answers_303_to_nbgitpuller(tool, platform):
    hint = platform.add(Message("stud-1", LEARNER, custom={"f2git_course": "cs101", "f2git_path": "week1/intro.ipynb",
                                                           "f2git_app": "lab"}))
    answer = Browser().launch(platform, hint)
    assert answer.status_code == 303, answer.text
    target = git_pull_target(answer.headers["Location"])
    assert target["repo"] == tool.url + "/git/cs101" and target["urlpath"] == "lab/tree/cs101/week1/intro.ipynb"


def test_login_by_post_and_the_redirect_to_the_platform(tool, platform):
    hint = platform.add(Message("stud-1", LEARNER))
    browser = Browser()
    answer = browser.session.post(tool.url + "/lti/login", data={
        "iss": platform.issuer, "login_hint": "stud-1", "target_link_uri": tool.url + "/lti/launch",
        "lti_message_hint": hint, "client_id": platform.client_id}, allow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == platform.url + "/authorize"
    assert query["redirect_uri"] == tool.url + "/lti/launch" and query["response_mode"] == "form_post"
    assert query["state"] and query["nonce"] and query["scope"] == "openid" and query["lti_message_hint"] == hint
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie


def test_canvas_learner_in_a_frame_gets_a_new_tab_page_unless_the_item_chose(tool, platform):
    # Canvas always says document_target "iframe" (jwt_message.rb); an item the picker made says window
    custom = {"f2git_course": "cs101", "f2git_path": "syllabus.md", "f2git_app": "lab"}
    page = Browser().launch(platform, platform.add(canvas_learner("stud-2", "ctx-cs101", custom)))
    assert page.status_code == 200
    link = re.search(r'<a class="button" id="continue" href="([^"]+)" target="_blank" rel="noopener"',
                     page.text).group(1)
    assert "syllabus.md of course cs101 opens in JupyterLab in a new tab" in page_words(page)
    assert page.headers["Content-Security-Policy"].endswith(f"frame-ancestors {platform.url} https://canvas.example.edu")
    assert git_pull_target(link.replace("&amp;", "&"))["urlpath"] == "lab/tree/cs101/syllabus.md"
    custom["f2git_target"] = "window"
    answer = Browser().launch(platform, platform.add(canvas_learner("stud-2", "ctx-cs101", custom)))
    assert answer.status_code == 303


def test_moodle_learner_in_a_new_window_goes_straight_to_the_hub(tool, platform):
    answer = Browser().launch(platform, platform.add(moodle_learner("7", "ctx-cs101", {"f2git_course": "cs101"})))
    assert answer.status_code == 303 and git_pull_target(answer.headers["Location"])["urlpath"] == "lab/tree/cs101"


def test_learner_launches_that_cannot_open_say_why(tool, platform):
    browser = Browser()
    other = browser.launch(platform, platform.add(Message("s", LEARNER, context_id="ctx-bio",
                                                          custom={"f2git_course": "cs101"})))
    assert "does not belong to the LMS course" in refusal(other) and other.status_code == 403
    gone = browser.launch(platform, platform.add(Message("s", LEARNER, custom={"f2git_course": "old"})))
    assert "no longer served" in refusal(gone) and gone.status_code == 404
    missing = browser.launch(platform, platform.add(Message("s", LEARNER, custom={"f2git_course": "cs101",
                                                                                  "f2git_path": "week9/x.ipynb"})))
    assert "not in course" in refusal(missing) and missing.status_code == 404
    unclaimed = browser.launch(platform, platform.add(Message("s", LEARNER, context_id="ctx-none")))
    assert "Tell your instructor" in refusal(unclaimed)


def test_a_launch_records_its_context_for_the_roster_reader(tool, platform):
    from f2git.lti.contexts import ContextStore

    message = Message("s", LEARNER, custom={"f2git_course": "cs101"}, memberships_url=platform.url + "/nrps/1")
    assert Browser().launch(platform, platform.add(message)).status_code == 303
    record = ContextStore.for_config(tool.config).get("lms", "ctx-cs101")
    assert record.memberships_url == platform.url + "/nrps/1" and record.title == "CS 101"


# -- 5. instructors' launches --

def test_instructor_launch_opens_only_their_course_dashboard_framable_by_the_platform(tool, platform):
    browser = Browser()
    answer = browser.launch(platform, platform.add(Message("teach-1", INSTRUCTOR)))
    assert answer.status_code == 303 and answer.headers["Location"] == tool.url + "/courses/cs101"
    session = answer.headers["Set-Cookie"]
    assert "f2git-lti-session=" in session and "SameSite=None" in session and "Secure" in session
    page = browser.session.get(answer.headers["Location"])
    assert page.status_code == 200 and "week1" in page.text
    assert page.headers["Content-Security-Policy"].endswith(f"frame-ancestors {platform.url}")
    assert "X-Frame-Options" not in page.headers
    assert browser.session.get(tool.url + "/courses/bio").status_code == 403
    courses = browser.session.get(tool.url + "/api/courses").json()["courses"]
    assert [c["name"] for c in courses] == ["cs101"]
    assert browser.session.post(tool.url + "/api/courses/bio/refresh").status_code == 403
    # a refresh of its own course from the dashboard, with the XSRF cookie set for the frame
    xsrf = browser.session.cookies.get("_xsrf")
    assert browser.session.post(tool.url + "/courses/cs101/refresh", data={"_xsrf": xsrf},
                                allow_redirects=False).status_code in (200, 202, 303)
    # without the session, the same browser is nobody special, and other pages stay unframable
    assert requests.get(tool.url + "/courses/cs101").headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_instructor_of_context_a_cannot_claim_course_b(tool, platform):
    browser = Browser()
    answer = browser.launch(platform, platform.add(Message("teach-1", INSTRUCTOR, context_id="ctx-cs101",
                                                           custom={"f2git_course": "bio"})))
    assert answer.status_code == 403 and "does not belong" in refusal(answer)
    assert "f2git-lti-session" not in browser.session.cookies


# -- 3. deep linking --

def pick(browser, tool, page, **fields):
    action, hidden = form_of(page.text)
    assert action == "deep-link"
    data = {**hidden, **fields}
    return browser.session.post(tool.url + "/lti/deep-link", data=data, headers={"Origin": tool.url})


def test_canvas_picker_returns_signed_resource_links_that_launch(tool, platform):
    browser = Browser()
    hint = platform.add(canvas_instructor_picker("teach-1", "ctx-cs101"))
    page = browser.launch(platform, hint)
    assert page.status_code == 200 and 'name="launch"' in page.text
    assert 'value="week1/intro.ipynb"' in page.text and 'value="week2"' in page.text
    # the configured platform's origin, and the LMS page the signed launch names (Canvas: the school's host)
    assert page.headers["Content-Security-Policy"].endswith(
        f"frame-ancestors {platform.url} https://canvas.example.edu")
    answer = pick(browser, tool, page, path=["week1/intro.ipynb", "week2"], app="notebook", target="window")
    assert answer.status_code == 200
    action, fields = form_of(answer.text)
    assert action == platform.url + "/deep-link-return"
    saved = requests.post(action, data=fields)
    assert saved.status_code == 200, saved.text  # lti1p3platform checked it against f2git's JWKS
    items, claims = platform.returned[-1], platform.returned_claims[-1]
    assert claims["iss"] == platform.client_id and claims["aud"] == platform.issuer
    assert claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] == platform.deployment_id
    assert [i["custom"]["f2git_path"] for i in items] == ["week1/intro.ipynb", "week2"]
    assert all(i["type"] == "ltiResourceLink" and i["url"] == tool.url + "/lti/launch"
               and i["window"]["targetName"] == "_blank" and i["custom"]["f2git_app"] == "notebook" for i in items)
    # a student's click on the stored item is a launch f2git checks
    student = Message("stud-9", LEARNER, custom=items[0]["custom"])
    launch = Browser().launch(platform, platform.add(student))
    assert launch.status_code == 303
    assert git_pull_target(launch.headers["Location"])["urlpath"] == "tree/cs101/week1/intro.ipynb"


def test_picker_echoes_data_and_honours_single_choice(tool, platform):
    message = canvas_instructor_picker("teach-1", "ctx-cs101", placement="assignment_selection")
    message.deep_linking["data"] = {"opaque": "csrf-123", "n": [1, 2]}
    browser = Browser()
    page = browser.launch(platform, platform.add(message))
    assert 'type="checkbox"' not in page.text  # accept_multiple false: radio buttons
    two = pick(browser, tool, page, path=["syllabus.md", "week2"], app="lab")
    assert two.status_code == 400 and "one item" in refusal(two)
    one = pick(browser, tool, page, path="syllabus.md", app="lab", title="Read me first")
    action, fields = form_of(one.text)
    claims = jwt.decode(fields["JWT"], options={"verify_signature": False})
    assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == {"opaque": "csrf-123", "n": [1, 2]}
    (item,) = claims["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert item["title"] == "Read me first"
    assert requests.post(action, data=fields).status_code == 200


def test_moodle_picker_with_a_folder_and_an_iframe_choice(tool, platform):
    browser = Browser()
    page = browser.launch(platform, platform.add(moodle_instructor_picker("3", "ctx-cs101")))
    answer = pick(browser, tool, page, path="", app="lab", target="iframe")
    _, fields = form_of(answer.text)
    (item,) = jwt.decode(fields["JWT"], options={"verify_signature": False})[
        "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert item["custom"]["f2git_path"] == "" and "iframe" in item and "window" not in item
    framed = Browser().launch(platform, platform.add(moodle_learner("8", "ctx-cs101", item["custom"], window=False)))
    assert framed.status_code == 303  # the instructor chose the frame


def test_picker_refuses_what_the_launch_did_not_allow(tool, platform):
    browser = Browser()
    page = browser.launch(platform, platform.add(canvas_instructor_picker("teach-1", "ctx-cs101")))
    assert pick(browser, tool, page, course="bio", path="", app="lab").status_code == 403
    assert pick(browser, tool, page, path="../etc/passwd", app="lab").status_code == 400
    assert pick(browser, tool, page, path="", app="emacs").status_code == 400
    forged = pick(browser, tool, page, launch="eyJ0eXAi.forged", path="", app="lab")
    assert forged.status_code == 400 and "expired or was not opened by f2git" in refusal(forged)
    _, hidden = form_of(page.text)
    foreign = browser.session.post(tool.url + "/lti/deep-link", data={**hidden, "path": "", "app": "lab"},
                                   headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


# -- f2git check --

def test_check_tries_each_platforms_key_set(tmp_path, platform):
    from tests.test_cli import f2git

    course = tmp_path / "c"
    course.mkdir()
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n[lti]\n[[lti.platforms]]\nname = "lms"\n'
                      f'issuer = "{platform.issuer}"\nclient_id = "x"\nauth_login_url = "{platform.url}/authorize"\n'
                      f'key_set_url = "{platform.url}/jwks"\n[[lti.platforms]]\nname = "gone"\n'
                      f'issuer = "https://gone.example"\nclient_id = "y"\nauth_login_url = "{platform.url}/authorize"\n'
                      f'key_set_url = "http://127.0.0.1:1/jwks"\n'
                      f'[courses.c]\nsource = "local"\npath = "{course}"\nlti_contexts = ["lms/ctx"]\n')
    platform.connect("http://127.0.0.1:9")
    done = f2git(config, "check")
    assert "lti platform lms: ok (key set with 1 key(s))" in done.stdout, done.stdout + done.stderr
    assert "lti platform gone: FAILED: the key set at http://127.0.0.1:1/jwks cannot be reached" in done.stdout
    assert "will be created" in done.stdout and not (tmp_path / "lti-key.pem").exists()
    assert done.returncode == 1
    platform.jwks_mode = "junk"
    assert "lti platform lms: FAILED: the key set at" in f2git(config, "check").stdout


def test_the_handoffs_own_pages_show_inside_the_lms_frame(tmp_path, source, platform):
    courses = {"cs101": {"source": "local", "path": str(tmp_path / "missing"), "schedule": 0,
                         "lti_contexts": ["ctx-cs101"]}}
    with RunningServer(make_config(tmp_path, source, platform, courses=courses)) as server:
        platform.connect(server.url)
        page = Browser().launch(platform, platform.add(Message("s", LEARNER, custom={"f2git_course": "cs101"})))
        assert page.status_code == 503 and "Location" not in page.headers  # no files yet: the handoff's page
        assert page.headers["Content-Security-Policy"].endswith(f"frame-ancestors {platform.url}")
        assert "X-Frame-Options" not in page.headers
