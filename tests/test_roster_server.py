"""Course membership from the LMS through a running `f2git serve` (in a thread): who fetches, who
manages, what a refused student reads, and how often the LMS is asked. The LMSes are the
`responses` fakes of Canvas and Moodle; identities come from tests/rosterhelpers.StubHubAuth."""
from __future__ import annotations

import json
import logging
import stat
import threading
import time

import pytest
import responses

import f2git.roster
from tests.canvasfake import FakeCanvas
from tests.moodlefake import TOKEN as MOODLE_TOKEN, FakeMoodle
from tests.canvasfake import TOKEN as CANVAS_TOKEN
from tests.rosterhelpers import StubHubAuth, as_user, git_clone
from tests.serverhelpers import RunningServer, config_factory, wait_until

pytestmark = pytest.mark.slow


class Lms:
    def __init__(self, mock):
        self.canvas = FakeCanvas(mock)
        self.moodle = FakeMoodle(mock)

    def roster_reads(self) -> int:
        return (sum("/enrollments" in r.url for r in self.canvas.api_requests)
                + self.moodle.calls.count("core_enrol_get_enrolled_users"))


@pytest.fixture
def lms(monkeypatch):
    monkeypatch.setenv("CANVAS_TOKEN", CANVAS_TOKEN)
    monkeypatch.setenv("MOODLE_TOKEN", MOODLE_TOKEN)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = Lms(mock)
        fake.canvas.put("README.md", b"# A\n")
        fake.canvas.page_size = 50
        fake.canvas.enrol("ana")
        fake.canvas.enrol("bo", state="invited")
        fake.canvas.enrol("cy", state="completed")
        fake.canvas.enrol("ed", "ObserverEnrollment")
        fake.canvas.enrol("tina", "TeacherEnrollment")
        fake.moodle.put("b.txt", b"B\n")
        fake.moodle.participants = {"mo": (["editingteacher"], True), "ana": (["student"], True)}
        yield fake


def serve(tmp_path, lms, **extra):
    courses = {
        "a": {**FakeCanvas.course_table(), "schedule": 0, "members": "lms", **extra.pop("a", {})},
        "b": {"source": "moodle", "url": "https://moodle.example.edu", "course_id": 4711, "token_env": "MOODLE_TOKEN",
              "schedule": 0, "members": "lms"},
        "c": {"source": "local", "path": str(tmp_path), "schedule": 0},  # hub groups, as before
    }
    auth = StubHubAuth(tmp_path / "data", admins={"root"}, groups={"teachers": {"ig"}, "extra": {"gx"}},
                       instructors_group="teachers")
    env = {"CANVAS_TOKEN": CANVAS_TOKEN, "MOODLE_TOKEN": MOODLE_TOKEN}
    return RunningServer(config_factory(tmp_path, courses, env, auth="jupyterhub", refresh_wait=20), auth=auth)


def remote(server, user, course="a"):
    status, _, body = server.request("GET", f"/api/courses/{course}/remote", headers=as_user(user))
    return status, json.loads(body)


def test_active_students_fetch_and_refused_ones_read_why_in_gits_words(tmp_path, lms):
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        done = git_clone(server.git_url("a"), "ana", tmp_path / "ana")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "ana" / "README.md").read_text() == "# A\n"
        reasons = {}
        for user in ("bo", "cy", "ed", "zed"):
            done = git_clone(server.git_url("a"), user, tmp_path / user)
            assert done.returncode != 0 and not (tmp_path / user / "README.md").exists()
            reasons[user] = done.stderr
        assert "invitation you have not accepted yet: accept it in Canvas" in reasons["bo"]
        assert "has ended" in reasons["cy"]
        assert "does not get the course files" in reasons["ed"]
        assert "(zed) are not enrolled in course a in Canvas" in reasons["zed"]
        assert all(text.count("remote error: course a:") == 1 for text in reasons.values()), reasons
        # each reason is about its student only: no other member's name or e-mail
        for user, text in reasons.items():
            assert not any(other in text for other in ("ana", "tina", "example.edu")), text
        # pullhook's question answers the same reason (it shows it as the fetch's error)
        status, answer = remote(server, "bo")
        assert status == 403 and "accept it in Canvas" in answer["error"]
        assert remote(server, "ana")[0] == 200


def test_a_refusal_storm_costs_at_most_one_roster_read(tmp_path, lms):
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        time.sleep(f2git.roster.RECHECK_INTERVAL)  # the read at start no longer counts against the storm
        before = lms.roster_reads()
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(remote(server, "zed")[0])) for _ in range(20)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started < 10
        assert answers == [403] * 20
        assert lms.roster_reads() - before <= 1


def test_a_student_enrolled_meanwhile_gets_in_on_the_next_click(tmp_path, lms, monkeypatch):
    monkeypatch.setattr(f2git.roster, "RECHECK_INTERVAL", 1.0)
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        assert remote(server, "new")[0] == 403
        lms.canvas.enrol("New")  # the teacher enrols her; Canvas's login is mixed case
        time.sleep(1.1)
        started = time.monotonic()
        status, answer = remote(server, "new")
        assert status == 200, answer
        assert time.monotonic() - started < 10


def test_a_failing_roster_keeps_the_last_one_and_managers_see_since_when(tmp_path, lms, monkeypatch):
    monkeypatch.setattr(f2git.roster, "RECHECK_INTERVAL", 0.5)
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        failing = (500, {"Content-Type": "text/html"}, "<html>Internal Server Error</html>")
        lms.canvas.injected[("enrollments", 1)] = [failing] * 50
        time.sleep(0.6)
        assert remote(server, "zed")[0] == 403  # the refused click re-reads: Canvas fails
        assert wait_until(lambda: json.loads((tmp_path / "data" / "rosters" / "a.json").read_text())["error"], 30)
        assert remote(server, "ana")[0] == 200  # never everyone out
        assert remote(server, "zed")[0] == 403  # never everyone in
        status, _, body = server.request("GET", "/api/courses/a/members", headers=as_user("tina"))
        members = json.loads(body)
        assert status == 200 and "answered 500" in members["error"] and members["error_since"]
        assert {"hub_user": "ana", "role": "learner"} in members["members"]
        status, _, page = server.request("GET", "/courses/a", headers=as_user("tina"))
        assert status == 200 and b"Roster error" in page and b"failing since" in page


def test_lms_teachers_manage_their_own_course_only_and_instructors_group_only_hub_courses(tmp_path, lms):
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: all((tmp_path / "data" / "rosters" / f"{c}.json").exists() for c in "ab"), 30)
        status, _, body = server.request("GET", "/api/courses/a/members", headers=as_user("tina"))
        answer = json.loads(body)
        assert status == 200 and answer["course"] == "a" and answer["source"] == "canvas"
        assert answer["read_at"].endswith("Z")
        assert answer["members"] == [{"hub_user": "ana", "role": "learner"}, {"hub_user": "tina", "role": "instructor"}]
        assert server.request("GET", "/courses/a", headers=as_user("tina"))[0] == 200
        # course B is not hers: its dashboard, API and refresh are refused; students never see /members
        assert server.request("GET", "/api/courses/b/members", headers=as_user("tina"))[0] == 403
        assert server.request("GET", "/courses/b", headers=as_user("tina"))[0] == 403
        assert server.request("POST", "/api/courses/b/refresh", body=b'{"allow_mass_delete": true}',
                              headers={**as_user("tina"), "Content-Type": "application/json"})[0] == 403
        assert server.request("GET", "/api/courses/a/members", headers=as_user("ana"))[0] == 403
        assert server.request("GET", "/api/courses/b/members", headers=as_user("mo"))[0] == 200
        # the hub's instructors group manages hub-group courses, no longer LMS-membership ones
        assert server.request("GET", "/courses/a", headers=as_user("ig"))[0] == 403
        assert server.request("GET", "/courses/c", headers=as_user("ig"))[0] == 200
        # hub admins keep every right
        assert server.request("GET", "/api/courses/b/members", headers=as_user("root"))[0] == 200
        assert remote(server, "root", "b")[0] == 200
        # the index lists only the teacher's course
        status, _, page = server.request("GET", "/", headers=as_user("tina"))
        assert status == 200 and b'href="./courses/a"' in page and b'courses/b"' not in page


def test_two_lms_users_with_one_hub_name_are_both_refused_and_shown_to_managers(tmp_path, lms):
    lms.canvas.enrol("Pat")
    lms.canvas.enrol("pat")  # another Canvas user whose login differs only in case
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        status, answer = remote(server, "pat")
        assert status == 403 and "could not be matched to one account" in answer["error"]
        members = json.loads(server.request("GET", "/api/courses/a/members", headers=as_user("tina"))[2])
        assert members["duplicates"] == ["pat"] and all(m["hub_user"] != "pat" for m in members["members"])
        page = server.request("GET", "/courses/a", headers=as_user("tina"))[2]
        assert b"Duplicate hub names" in page


def test_groups_add_learners_and_the_roster_stays_private(tmp_path, lms, caplog):
    caplog.set_level(logging.DEBUG)
    lms.canvas.enrol(None)  # a user without a login: counted, never admitted
    with serve(tmp_path, lms, a={"groups": ["extra"]}) as server:
        path = tmp_path / "data" / "rosters" / "a.json"
        assert wait_until(path.exists, 30)
        assert remote(server, "gx")[0] == 200  # a member of the hub group beside the roster
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        members = json.loads(server.request("GET", "/api/courses/a/members", headers=as_user("tina"))[2])
        assert members["unmapped"] == 1
        page = server.request("GET", "/courses/a", headers=as_user("tina"))[2].decode()
        assert "1 learner," in page and "1 instructor," in page and "1 LMS user without" in page
        assert remote(server, "zed")[0] == 403
    repo = tmp_path / "data" / "repos"
    assert not any("rosters" in str(p) for p in repo.rglob("*"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(name in logged for name in ("ana", "tina", "bo", "example.edu")), logged


def test_a_roster_never_read_lets_in_hub_admins_only_and_says_so(tmp_path, lms, monkeypatch):
    monkeypatch.setenv("MOODLE_TOKEN", "0badc0ffee0badc0ffee0badc0ffee00")  # Moodle refuses every read
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "b.json").exists(), 30)
        status, answer = remote(server, "ana", "b")
        assert status == 403 and "has not been read from Moodle yet, so only hub admins may fetch" in answer["error"]
        assert remote(server, "root", "b")[0] == 200
        page = server.request("GET", "/courses/b", headers=as_user("root"))[2]
        assert b"has not been read yet: until it is, only hub admins may fetch" in page
        assert b"Moodle rejected the token" in page


def test_members_any_lets_every_hub_user_fetch(tmp_path, lms):
    with serve(tmp_path, lms, a={"members": "any"}) as server:
        assert remote(server, "zed")[0] == 200
        assert server.request("GET", "/courses/a", headers=as_user("tina"))[0] == 403  # no LMS roles


def test_the_roster_is_read_again_after_roster_ttl_and_not_before(tmp_path, lms):
    from tests.serverhelpers import ManualClock

    clock = ManualClock()
    courses = {"a": {**FakeCanvas.course_table(), "schedule": 0, "members": "lms", "roster_ttl": 900}}
    auth = StubHubAuth(tmp_path / "data")
    make = config_factory(tmp_path, courses, {"CANVAS_TOKEN": CANVAS_TOKEN}, auth="jupyterhub")
    with RunningServer(make, auth=auth, clock=clock) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        first = lms.roster_reads()
        for _ in range(5):
            assert remote(server, "ana")[0] == 200
        clock.advance(899)
        assert remote(server, "ana")[0] == 200
        assert lms.roster_reads() == first  # members' clicks inside roster_ttl ask the LMS nothing
        clock.advance(2)
        lms.canvas.enrollments = [e for e in lms.canvas.enrollments if e.user.login_id != "ana"]  # ana dropped
        assert remote(server, "ana")[0] == 200  # this click is served; it starts the read in the background
        assert wait_until(lambda: lms.roster_reads() == first + 1, 30)
        assert wait_until(lambda: remote(server, "ana")[0] == 403, 30)
        status, answer = remote(server, "ana")
        assert "not enrolled" in answer["error"]


def test_hostile_lms_names_are_escaped_on_the_dashboard_and_grant_nothing(tmp_path, lms):
    hostile = '<img src=x onerror="alert(1)">'
    lms.canvas.enrol(hostile)
    lms.canvas.enrol(hostile.upper())  # the same hub name twice: listed as a duplicate
    lms.canvas.enrol("root")  # an LMS login equal to a hub admin's name gives a learner's rights, nothing more
    with serve(tmp_path, lms) as server:
        assert wait_until(lambda: (tmp_path / "data" / "rosters" / "a.json").exists(), 30)
        page = server.request("GET", "/courses/a", headers=as_user("tina"))[2].decode()
        assert "Duplicate hub names" in page and hostile.lower() not in page and "&lt;img" in page
        assert server.request("GET", "/courses/a", headers=as_user("ana"))[0] == 403
