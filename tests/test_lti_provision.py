"""A course connects itself: an instructor's launch from an LMS course no f2git course claims
(`[lti] provision` off, ask, auto), the course store beside the config, sources from the admin's
platform defaults, never from the launch."""
from __future__ import annotations

import re
import time
import tomllib
from urllib.parse import urljoin

import pytest
import requests

from f2git.config import parse
from f2git.lti import provision
from f2git.lti.launch import LTI, Launch
from tests.ltiplatform import INSTRUCTOR, LEARNER, Browser, LtiPlatform, Message
from f2git.server.app import Schedule
from tests.serverhelpers import RunningServer, wait_until
from tests.test_lti import make_config, page_words, refusal, source  # noqa: F401  (fixture)

NEW = dict(context_id="ctx-new", context_title="Data Science 1")


@pytest.fixture
def platform():
    with LtiPlatform() as running:
        yield running


def serve(tmp_path, source, platform, mode):
    server = RunningServer(make_config(tmp_path, source, platform, lti={"provision": mode}))
    platform.connect(server.url)
    return server


def test_auto_creates_the_course_at_once_and_keeps_it_across_restarts(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "auto") as tool:
        learner = Browser().launch(platform, platform.add(Message("s", LEARNER, **NEW)))
        assert learner.status_code == 404 and not (tmp_path / "lti-courses").exists()  # learners create nothing
        teacher = Browser()
        answer = teacher.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        assert answer.status_code == 303 and answer.headers["Location"] == tool.url + "/courses/data-science-1"
        stored = tomllib.loads((tmp_path / "lti-courses" / "data-science-1.toml").read_text())
        table = stored["courses"]["data-science-1"]
        assert table == {"source": "local", "path": str(tmp_path / "data" / "uploads" / "data-science-1"),
                         "lti_contexts": ["ctx-new"]}
        upload = tmp_path / "data" / "uploads" / "data-science-1"
        (upload / "notes.md").write_text("# week 1\n")
        assert teacher.session.get(answer.headers["Location"]).status_code == 200
        # served without a restart: a student's launch refreshes it and hands off
        launch = Browser().launch(platform, platform.add(Message("s", LEARNER, **NEW)))
        assert launch.status_code == 303 and "repo=" in launch.headers["Location"]
        assert requests.get(tool.url + "/api/courses/data-science-1").status_code == 200
    with RunningServer(make_config(tmp_path, source, platform, lti={"provision": "auto"})) as again:
        platform.connect(again.url)
        assert "data-science-1" in again.config.courses
        assert Browser().launch(platform, platform.add(Message("s", LEARNER, **NEW))).status_code == 303
        assert not (tmp_path / "lti-courses" / "data-science-1-2.toml").exists()


def test_a_course_created_from_a_launch_is_checked_on_its_schedule_without_a_restart(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "auto") as tool:
        assert tool.get_json("/api/courses/cs101")["next_refresh"] is None  # schedule 0: clicks only
        upload = tmp_path / "data" / "uploads" / "data-science-1"
        answer = Browser().launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        assert answer.status_code == 303  # the dashboard, not followed: nothing here clicks or refreshes
        (upload / "notes.md").write_text("# week 1\n")
        course = tool.get_json("/api/courses/data-science-1")
        assert course["schedule"] == 600 and course["next_refresh"] is not None
        assert course["next_refresh"] <= time.time() + Schedule.FIRST_SPREAD + 1  # never checked: soon
        # the scheduled check itself runs and publishes the uploaded file, with no click and no restart
        assert wait_until(lambda: tool.get_json("/api/courses/data-science-1")["commit"], timeout=20)
        after = tool.get_json("/api/courses/data-science-1")
        assert after["last_error"] is None and after["next_refresh"] > time.time() + 500  # the next period


def test_ask_files_a_request_a_manager_approves(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "ask") as tool:
        teacher = Browser()
        hint = platform.add(Message("t", INSTRUCTOR, name="Grace Hopper", **NEW))
        filed = teacher.launch(platform, hint)
        assert filed.status_code == 202 and "request is filed" in filed.text
        german = Browser()
        german.session.headers["Accept-Language"] = "de"
        again = german.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        assert again.status_code == 202 and "Location" not in again.headers
        assert "f2git hat noch keinen Kurs für „Data Science 1“. Ihre Anfrage ist eingereicht" in page_words(again)
        assert "Dateien aus einem lokalen Upload-Ordner" in page_words(again)
        assert not (tmp_path / "lti-courses").exists()
        manager = requests.Session()
        page = manager.get(tool.url + "/lti/requests")
        assert page.status_code == 200 and page.text.count('name="request"') == 1  # one per context
        assert "Data Science 1" in page.text and "ctx-new" in page.text and "a local upload folder" in page.text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        unchecked = manager.post(tool.url + "/lti/requests", data={"request": "lms/ctx-new"})
        assert unchecked.status_code == 403  # no XSRF token: refused
        approved = manager.post(tool.url + "/lti/requests", data={"request": "lms/ctx-new", "_xsrf": xsrf},
                                allow_redirects=False)
        assert approved.status_code == 303 and approved.headers["Location"].endswith("courses/data-science-1")
        assert (tmp_path / "lti-courses" / "data-science-1.toml").exists()
        again = teacher.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        assert again.status_code == 303 and again.headers["Location"] == tool.url + "/courses/data-science-1"
        assert tool.get_json("/api/courses/data-science-1")["next_refresh"] is not None  # scheduled once approved


def course_requests_notice(page: requests.Response) -> str | None:
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'id="course-requests"><a href="([^"]+)">(.*?)</a>', page.text, re.S)
    return found and f"{found.group(1)} {' '.join(found.group(2).split())}"


def test_managers_find_pending_course_requests_on_the_dashboard(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "ask") as tool:
        manager = requests.Session()
        assert course_requests_notice(manager.get(tool.url + "/")) is None  # nothing waits: nothing said
        teacher = Browser()
        assert teacher.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW))).status_code == 202
        assert course_requests_notice(manager.get(tool.url + "/")) == \
            "./lti/requests 1 course request from the LMS waits for approval"
        other = Message("t2", INSTRUCTOR, context_id="ctx-other", context_title="Other")
        assert Browser().launch(platform, platform.add(other)).status_code == 202
        notice = course_requests_notice(manager.get(tool.url + "/"))
        assert notice == "./lti/requests 2 course requests from the LMS wait for approval"
        assert manager.get(urljoin(tool.url + "/", notice.split()[0])).text.count('name="request"') == 2  # the link works
        # an instructor's LTI session (of cs101) manages its course, not f2git: no word of others' requests
        assert teacher.launch(platform, platform.add(Message("t", INSTRUCTOR))).status_code == 303
        assert course_requests_notice(teacher.session.get(tool.url + "/")) is None


def test_an_lti_instructor_cannot_approve_requests(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "ask") as tool:
        teacher = Browser()
        assert teacher.launch(platform, platform.add(Message("t", INSTRUCTOR))).status_code == 303  # cs101's
        assert teacher.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW))).status_code == 202
        assert teacher.session.get(tool.url + "/lti/requests").status_code == 403


def test_off_tells_the_instructor_what_to_give_the_admin(tmp_path, source, platform):
    with serve(tmp_path, source, platform, "off"):
        answer = Browser().launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        assert answer.status_code == 404 and 'lti_contexts = ["ctx-new"]' in refusal(answer)
        german = Browser()
        german.session.headers["Accept-Language"] = "de-AT,de;q=0.9"
        answer = german.launch(platform, platform.add(Message("t", INSTRUCTOR, **NEW)))
        words = refusal(answer)
        assert answer.status_code == 404 and answer.headers["Content-Language"] == "de"
        assert "Bitten Sie die Hub-Administration, lti_contexts = [\"ctx-new\"] im f2git-Kurs" in words


def launch_of(platform_config, context_id, custom):
    return Launch(platform_config, {LTI + "context": {"id": context_id, "title": "Algebra"}, LTI + "custom": custom,
                                    "sub": "t"})


def test_the_source_comes_from_the_admins_platform_defaults_never_from_the_launch(tmp_path):
    base = {"name": "lms", "issuer": "https://lms.example.edu", "client_id": "c",
            "auth_login_url": "https://lms.example.edu/auth", "key_set_url": "https://lms.example.edu/jwks"}
    config = parse({"server": {"data_dir": str(tmp_path / "data")},
                    "lti": {"platforms": [{**base, "provision_source": "canvas",
                                           "provision_url": "https://canvas.example.edu",
                                           "provision_token_env": "CANVAS_TOKEN"}]}, "courses": {}},
                   tmp_path / "f2git.toml", {"CANVAS_TOKEN": "secret"})
    platform = config.lti.platforms[0]
    launch = launch_of(platform, "ctx-9", {"canvas_course_id": "4242", "token_env": "EVIL", "url": "https://evil"})
    request = provision.request_for(config, launch, "t")
    assert request.table == {"source": "canvas", "url": "https://canvas.example.edu", "course_id": 4242,
                             "token_env": "CANVAS_TOKEN", "lti_contexts": ["ctx-9"]}
    # Moodle: the context id is the course id
    platform.provision_source, platform.provision_url = "moodle", "https://moodle.example.edu"
    assert provision.request_for(config, launch_of(platform, "17", {}), "t").table["course_id"] == 17
    # no course id the source can use: a local upload folder
    assert provision.request_for(config, launch_of(platform, "ctx-x", {}), "t").table["source"] == "local"
    with pytest.raises(Exception) as error:
        parse({"server": {}, "lti": {"platforms": [{**base, "provision_source": "dropbox"}]}},
              tmp_path / "f.toml", {})
    assert "provision_source" in str(error.value)


def test_course_names_are_readable_and_never_taken():
    assert provision.course_name("Intro to CS (Fall 2026)", "c", set()) == "intro-to-cs-fall-2026"
    assert provision.course_name("CS 101", "c", {"cs-101"}) == "cs-101-2"
    assert provision.course_name("日本語", "ctx", set()).startswith("lti-")


def test_an_lms_course_title_cannot_write_toml_into_the_store(tmp_path, source, platform):
    hostile = Message("t\n[courses.root]\nsource = \"local\"", INSTRUCTOR, context_id="ctx-evil",
                      context_title='Evil\n[courses.root]\nsource = "local"\npath = "/etc"')
    with serve(tmp_path, source, platform, "auto") as tool:
        newline_id = Message("t", INSTRUCTOR, context_id='ctx\npath = "/"', context_title="x")
        refused = Browser().launch(platform, platform.add(newline_id))
        assert refused.status_code == 409 and not (tmp_path / "lti-courses").exists()
        assert Browser().launch(platform, platform.add(hostile)).status_code == 303
        (stored,) = (tmp_path / "lti-courses").glob("*.toml")
        courses = tomllib.loads(stored.read_text())["courses"]
        assert list(courses) == ["evil-courses-root-source-local-path-etc"]
        assert courses["evil-courses-root-source-local-path-etc"]["path"].startswith(str(tmp_path / "data" / "uploads"))
        assert "root" not in tool.config.courses
