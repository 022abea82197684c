"""Course membership from the LMS end to end: a real JupyterHub, f2git as its service (configured
by `f2git hub-config`), students' servers with nbgitpuller and pullhook, real clicks; Canvas and
Moodle are the tests' fakes served over HTTP (tests/lmshttp.py)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from f2git.config import load
from f2git.hubconfig import render
from f2git.links import repo_url
from tests import canvasfake, moodlefake
from tests.canvasfake import FakeCanvas
from tests.hubhelpers import CHP, Hub, free_port, service_toml, shown, toml_table
from tests.lmshttp import ServedFake
from tests.serverhelpers import wait_until
from tests.moodlefake import FakeMoodle

pytestmark = pytest.mark.slow

RECHECK = 10.5  # s: a refused click re-reads a roster at most every 10 s


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    work = tmp_path_factory.mktemp("hubroster")
    canvas_http = ServedFake([canvasfake.BASE, canvasfake.FILES_HOST])
    canvas = FakeCanvas(canvas_http)
    canvas.put("README.md", b"# CS 101\n")
    for login, role, state in (("Ana", "StudentEnrollment", "active"), ("bo", "StudentEnrollment", "invited"),
                               ("cy", "StudentEnrollment", "completed"), ("ed", "ObserverEnrollment", "active"),
                               ("tina", "TeacherEnrollment", "active")):
        canvas.enrol(login, role, state)
    moodle_http = ServedFake([moodlefake.BASE])
    moodle = FakeMoodle(moodle_http)
    moodle.put("notes.txt", b"notes\n")
    moodle.participants = {"mo": (["editingteacher"], True), "ana": (["student"], True)}
    f2git_port = free_port()
    config_path = work / "f2git.toml"
    with canvas_http, moodle_http, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CANVAS_TOKEN", canvasfake.TOKEN)
        patch.setenv("MOODLE_TOKEN", moodlefake.TOKEN)
        courses = {"cs101": {"source": "canvas", "url": canvas_http.url(canvasfake.BASE),
                             "course_id": canvasfake.COURSE, "token_env": "CANVAS_TOKEN",
                             "hub_group": "nbgrader-{course}"},
                   "bio": {"source": "moodle", "url": moodle_http.url(moodlefake.BASE),
                           "course_id": moodlefake.COURSE, "token_env": "MOODLE_TOKEN"}}
        config_path.write_text(service_toml(f2git_port, work / "data") + "".join(
            toml_table(f"courses.{name}", {**table, "schedule": 0, "members": "lms"}) for name, table in courses.items()))
        config = load(config_path)
        with Hub(work / "jupyterhub", render(config), groups={}) as running:
            running.f2git = config
            running.f2git_url = f"http://127.0.0.1:{f2git_port}"
            running.canvas = canvas
            running.wait_for_url(f"{running.f2git_url}/healthz", "the f2git service")
            for name in ("ana", "bo", "cy", "ed", "zed", "tina", "mo"):
                assert running.api("POST", f"/users/{name}").status_code in (201, 409)
            running.tokens = {name: running.start_user(name) for name in ("ana", "bo", "cy", "ed", "zed")}
            for name in ("tina", "mo"):
                running.tokens[name] = running.api("POST", f"/users/{name}/tokens", json={"note": "t"}).json()["token"]
            yield running


def f2git_service_token(hub: Hub) -> str:
    """The API token the hub gave the f2git service it runs (from the service process's environment)."""
    from tests.hubhelpers import process_environ

    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes() and \
                    str(hub.f2git.path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return process_environ(pid)["JUPYTERHUB_API_TOKEN"]
        except (OSError, KeyError):
            continue
    raise AssertionError("the f2git service process was not found")


def folder(hub: Hub, user: str) -> Path:
    return hub.work / "home" / user / "cs101"


def roster_reads(hub: Hub) -> int:
    return sum("/enrollments" in r.url for r in hub.canvas.api_requests)


def test_an_active_student_gets_in_and_the_others_read_why_they_do_not(hub):
    repo = repo_url(hub.f2git, "cs101")
    events = hub.click("ana", hub.tokens["ana"], repo)  # Canvas's login "Ana", the hub's "ana"
    assert events[-1] == {"phase": "finished"}, events
    assert (folder(hub, "ana") / "README.md").read_text() == "# CS 101\n"
    expected = {"bo": "is an invitation you have not accepted yet: accept it in Canvas",
                "cy": "your enrolment in course cs101 in Canvas has ended",
                "ed": "(observer) does not get the course files",
                "zed": "you (zed) are not enrolled in course cs101 in Canvas"}
    for user, words in expected.items():
        events = hub.click(user, hub.tokens[user], repo)
        assert events[-1]["phase"] == "error", events
        assert words in shown(events), (user, events)
        assert not any(name in shown(events) for name in ("ana", "tina", "example.edu")), events
        assert not folder(hub, user).exists()


def test_a_teacher_manages_her_own_course_and_no_other(hub):
    tina = {"Authorization": f"token {hub.tokens['tina']}"}
    members = requests.get(f"{hub.f2git_url}/api/courses/cs101/members", headers=tina, timeout=30)
    assert members.status_code == 200, members.text
    assert {"hub_user": "ana", "role": "learner"} in members.json()["members"]
    assert requests.get(f"{hub.f2git_url}/courses/cs101", headers=tina, timeout=30).status_code == 200
    assert requests.get(f"{hub.f2git_url}/api/courses/bio/members", headers=tina, timeout=30).status_code == 403
    assert requests.get(f"{hub.f2git_url}/courses/bio", headers=tina, timeout=30).status_code == 403
    mo = {"Authorization": f"token {hub.tokens['mo']}"}
    assert requests.get(f"{hub.f2git_url}/courses/bio", headers=mo, timeout=30).status_code == 200
    assert requests.get(f"{hub.f2git_url}/courses/cs101", headers=mo, timeout=30).status_code == 403
    ana = {"Authorization": f"token {hub.tokens['ana']}"}
    assert requests.get(f"{hub.f2git_url}/api/courses/cs101/members", headers=ana, timeout=30).status_code == 403


def test_a_student_enrolled_meanwhile_gets_in_on_the_next_click(hub):
    hub.canvas.enrol("zed")
    time.sleep(RECHECK)  # zed's refused click of the first test re-read the roster just now
    started = time.monotonic()
    events = hub.click("zed", hub.tokens["zed"], repo_url(hub.f2git, "cs101"))
    assert events[-1] == {"phase": "finished"}, events
    assert time.monotonic() - started < 30
    assert (folder(hub, "zed") / "README.md").exists()


def test_the_hub_group_follows_the_roster_with_the_least_scopes(hub):
    # every read roster is mirrored: ana and tina from the start, zed since his enrolment
    assert wait_until(lambda: set(hub.api("GET", "/groups/nbgrader-cs101").json()["users"]) == {"ana", "tina", "zed"},
                      30), hub.api("GET", "/groups/nbgrader-cs101").json()
    assert hub.api("GET", "/groups/nbgrader-bio").status_code == 404  # only courses that ask get a group
    # the service may change its course's group and no other
    assert "groups!group=nbgrader-cs101" in render(hub.f2git)
    assert hub.api("POST", "/groups/other", json={}).status_code == 201
    service_token = f2git_service_token(hub)
    refused = requests.post(f"{hub.url}/hub/api/groups/other/users", json={"users": ["ana"]},
                            headers={"Authorization": f"token {service_token}"}, timeout=30)
    assert refused.status_code in (403, 404), refused.text


def test_a_roster_endpoint_answering_500_keeps_the_last_roster(hub):
    hub.canvas.injected[("enrollments", 1)] = [(500, {"Content-Type": "text/plain"}, "Internal Server Error")] * 100
    time.sleep(RECHECK)
    before = roster_reads(hub)
    events = hub.click("ed", hub.tokens["ed"], repo_url(hub.f2git, "cs101"))  # refused: re-reads, Canvas fails
    assert events[-1]["phase"] == "error" and "does not get the course files" in shown(events), events
    assert roster_reads(hub) > before
    events = hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, "cs101"))
    assert events[-1] == {"phase": "finished"}, events
    tina = {"Authorization": f"token {hub.tokens['tina']}"}
    members = requests.get(f"{hub.f2git_url}/api/courses/cs101/members", headers=tina, timeout=30).json()
    assert "answered 500" in members["error"] and members["error_since"], members
    assert {"hub_user": "ana", "role": "learner"} in members["members"]
    page = requests.get(f"{hub.f2git_url}/courses/cs101", headers=tina, timeout=30).text
    assert "Roster error" in page and "failing since" in page
    assert json.dumps(members).count("zed") == 1  # zed, enrolled before the failure, is still a member
