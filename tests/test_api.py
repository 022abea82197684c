"""The JSON API and /healthz of a running server, and how every handler applies auth."""
from __future__ import annotations

import base64
import json

import pytest

from f2git.server.auth import Auth, Identity
from f2git.store import CourseRepo
from tests.repohelpers import SourceFolder, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import RunningServer, config_factory

TOKEN = "f2git-test-token-7Qz!x$9"  # distinctive, so a leak would be found


@pytest.fixture
def sources(tmp_path):
    cs101 = SourceFolder(tmp_path / "cs101")
    for number in range(6):
        cs101.write(f"week{number}/sheet.ipynb", f"sheet {number}\n")
    cs102 = SourceFolder(tmp_path / "cs102")
    cs102.write("README.md", "# CS 102\n")
    return {"cs101": cs101, "cs102": cs102}


def courses(sources, **cs101):
    return {"cs101": {"source": "local", "path": str(sources["cs101"].path), "schedule": 0, **cs101},
            "cs102": {"source": "local", "path": str(sources["cs102"].path), "schedule": 3600}}


@pytest.fixture
def server(tmp_path, sources):
    with RunningServer(config_factory(tmp_path, courses(sources), refresh_ttl=3600)) as running:
        yield running


def test_healthz(server):
    status, headers, body = server.request("GET", "/healthz")
    assert (status, body) == (200, b"ok")


def test_course_list_before_and_after_a_sync(server):
    before = {c["name"]: c for c in server.get_json("/api/courses")["courses"]}
    assert list(before) == ["cs101", "cs102"]
    assert before["cs101"]["commit"] is None and before["cs101"]["last_check"] is None
    assert before["cs101"]["source"] == "local"
    assert before["cs101"]["git_url"] == f"{server.url}/git/cs101"
    assert before["cs101"]["next_refresh"] is None  # schedule = 0: clicks and the API only
    status, result = server.post_json("/api/courses/cs101/refresh")
    assert status == 200
    after = server.get_json("/api/courses/cs101")
    assert after["commit"] == result["commit"] == CourseRepo.for_course(server.config, "cs101").head()
    assert after["last_check"] is not None and after["last_change"] is not None
    assert after["last_error"] is None and after["refreshing"] is False
    assert after["history"][0]["commit"] == result["commit"]  # one course: with its history
    assert "history" not in server.get_json("/api/courses")["courses"][0]


def test_scheduled_course_shows_its_next_refresh(server):
    listed = {c["name"]: c for c in server.get_json("/api/courses")["courses"]}
    assert isinstance(listed["cs102"]["next_refresh"], float)
    assert listed["cs102"]["schedule"] == 3600


def test_refresh_answers_like_sync_json(server, sources):
    status, first = server.post_json("/api/courses/cs101/refresh")
    assert status == 200
    assert first == {"course": "cs101", "ok": True, "changed": True, "commit": first["commit"],
                     "added": 6, "modified": 0, "deleted": 0, "skipped": []}
    sources["cs101"].write("week0/sheet.ipynb", "sheet 0, fixed\n")
    status, second = server.post_json("/api/courses/cs101/refresh")
    assert (second["changed"], second["modified"], second["added"]) == (True, 1, 0)
    status, third = server.post_json("/api/courses/cs101/refresh", {})
    assert (third["changed"], third["commit"]) == (False, second["commit"])


def test_mass_delete_needs_the_option(server, sources):
    server.post_json("/api/courses/cs101/refresh")
    for number in range(1, 6):
        sources["cs101"].delete(f"week{number}/sheet.ipynb")
    status, refused = server.post_json("/api/courses/cs101/refresh")
    assert status == 200 and refused["ok"] is False and "delete 5 of 6" in refused["error"]
    repo = CourseRepo.for_course(server.config, "cs101")
    assert len(repo.files(repo.head())) == 6  # nothing changed
    assert server.get_json("/api/courses/cs101")["last_error"] == refused["error"]
    status, allowed = server.post_json("/api/courses/cs101/refresh", {"allow_mass_delete": True})
    assert allowed["ok"] is True and allowed["deleted"] == 5
    assert list(repo.files(repo.head())) == ["week0/sheet.ipynb"]


@pytest.mark.parametrize("body, message", [
    (b"{not json", "request body is not valid JSON"),
    (b"[true]", "request body must be a JSON object"),
    (b'{"allow_mass_delete": "yes"}', "option 'allow_mass_delete' must be true or false"),
    (b'{"force": true}', "unknown option 'force' (known: allow_mass_delete)"),
])
def test_bad_refresh_bodies_are_refused_with_the_reason(server, body, message):
    status, headers, answer = server.request("POST", "/api/courses/cs101/refresh", body=body,
                                             headers={"Content-Type": "application/json"})
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(answer)["error"].startswith(message)


def test_unknown_course_is_a_json_404(server):
    for method, path in (("GET", "/api/courses/nope"), ("POST", "/api/courses/nope/refresh")):
        status, headers, answer = server.request(method, path, body=b"" if method == "POST" else None)
        assert status == 404 and json.loads(answer) == {"error": "no course named 'nope'"}


# -- auth: the token policy end to end, and the handlers' use of any policy -------------------

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_token_auth_guards_git_and_api_but_not_healthz(tmp_path, sources, monkeypatch):
    monkeypatch.setenv("F2GIT_TEST_TOKENS", TOKEN)
    make = config_factory(tmp_path, courses(sources), env={"F2GIT_TEST_TOKENS": TOKEN},
                          auth="token", tokens_env="F2GIT_TEST_TOKENS")
    with RunningServer(make) as server:
        assert server.request("GET", "/healthz")[0] == 200
        status, headers, answer = server.request("GET", "/api/courses")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="f2git"'
        assert json.loads(answer) == {"error": "authentication required"}
        assert server.request("GET", "/api/courses", headers={"Authorization": "Bearer wrong"})[0] == 401
        status, _, answer = server.request("GET", "/api/courses", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and TOKEN.encode() not in answer

        status, headers, _ = server.request("GET", "/git/cs101/info/refs?service=git-upload-pack")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="f2git"'
        denied = git("ls-remote", server.git_url("cs101"), check=False)
        assert denied.returncode != 0
        # git answers the Basic challenge with the credentials it has (here: in the URL).
        with_token = server.git_url("cs101").replace("http://", f"http://student:{TOKEN.replace('!', '%21').replace('$', '%24')}@")
        git("clone", "--depth", "1", with_token, tmp_path / "clone")
        assert (tmp_path / "clone" / "week0" / "sheet.ipynb").read_text() == "sheet 0\n"


class HeaderAuth(Auth):
    """Who asks is in X-User; students read cs101 only; only the teacher manages."""

    async def identify(self, handler):
        user = handler.request.headers.get("X-User")
        return Identity(user, kind="user") if user else None

    def may_fetch(self, identity, course):
        return identity.name == "teacher" or course.name == "cs101"

    def may_manage(self, identity, course):
        return identity.name == "teacher"


def test_handlers_ask_the_policy(tmp_path, sources):
    with RunningServer(config_factory(tmp_path, courses(sources), refresh_ttl=3600), auth=HeaderAuth()) as server:
        student, teacher = {"X-User": "student"}, {"X-User": "teacher"}
        status, _, answer = server.request("GET", "/api/courses", headers=student)
        assert [c["name"] for c in json.loads(answer)["courses"]] == ["cs101"]
        status, _, answer = server.request("GET", "/api/courses/cs102", headers=student)
        assert status == 403 and json.loads(answer) == {"error": "you (student) are not in course 'cs102': f2git gives its files to the course's members only; if you should be one, ask your instructor to add you"}
        refs = "/git/{}/info/refs?service=git-upload-pack"
        assert server.request("GET", refs.format("cs102"), headers=student)[0] == 403
        assert server.request("GET", refs.format("cs101"), headers=student)[0] == 200
        # a student's refresh is a click: within refresh_ttl of the last check it asks nothing
        status, _, answer = server.request("POST", "/api/courses/cs101/refresh", body=b"", headers=student)
        assert status == 200 and json.loads(answer)["outcome"] == "fresh"
        status, _, answer = server.request("POST", "/api/courses/cs101/refresh", body=b'{"allow_mass_delete": true}',
                                           headers={**student, "Content-Type": "application/json"})
        assert status == 403 and json.loads(answer) == {"error": "student may not manage course 'cs101'"}
        status, _, answer = server.request("POST", "/api/courses/cs102/refresh", body=b"", headers=student)
        assert status == 403 and json.loads(answer) == {"error": "you (student) are not in course 'cs102': f2git gives its files to the course's members only; if you should be one, ask your instructor to add you"}
        status, _, answer = server.request("POST", "/api/courses/cs102/refresh", body=b"", headers=teacher)
        assert status == 200 and json.loads(answer)["ok"] is True


# -- token roles: fetch tokens read and click, manage tokens manage ------------------------------

FETCH_TOKEN = "f2git-fetch-token-4Rq8distinct"


def test_fetch_tokens_read_and_click_while_manage_tokens_manage(tmp_path, sources, monkeypatch):
    env = {"F2GIT_TEST_FETCH": FETCH_TOKEN, "F2GIT_TEST_MANAGE": TOKEN}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    make = config_factory(tmp_path, courses(sources), env=env, auth="token", tokens_env="F2GIT_TEST_FETCH",
                          manage_tokens_env="F2GIT_TEST_MANAGE", refresh_ttl=3600)
    student, teacher = {"Authorization": f"Bearer {FETCH_TOKEN}"}, {"Authorization": f"Bearer {TOKEN}"}
    with RunningServer(make) as server:
        def post(path, who, body=b""):
            status, _, answer = server.request("POST", path, body=body,
                                               headers={**who, "Content-Type": "application/json"})
            return status, json.loads(answer)

        # a student's refresh is a click: it syncs a stale course, then asks nothing within refresh_ttl
        status, first = post("/api/courses/cs101/refresh", student)
        assert status == 200 and first["outcome"] == "refreshed" and first["commit"]
        sources["cs101"].write("week0/sheet.ipynb", "sheet 0, fixed\n")
        status, second = post("/api/courses/cs101/refresh", student)
        assert (status, second["outcome"], second["commit"]) == (200, "fresh", first["commit"])
        status, refused = post("/api/courses/cs101/refresh", student, b'{"allow_mass_delete": true}')
        assert status == 403 and refused == {"error": "fetch token may not manage course 'cs101'"}
        for path in ("/metrics", "/", "/courses/cs101"):
            assert server.request("GET", path, headers=student)[0] == 403, path
        # the manager's refresh syncs now
        status, synced = post("/api/courses/cs101/refresh", teacher)
        assert status == 200 and synced["modified"] == 1 and synced["commit"] != first["commit"]
        for path in ("/metrics", "/", "/courses/cs101"):
            assert server.request("GET", path, headers=teacher)[0] == 200, path
        clone = server.git_url("cs101").replace("http://", f"http://student:{FETCH_TOKEN}@")
        git("clone", "--depth", "1", clone, tmp_path / "clone")


def test_students_see_no_more_of_a_course_than_they_need(tmp_path, sources, monkeypatch):
    env = {"F2GIT_TEST_FETCH": FETCH_TOKEN, "F2GIT_TEST_MANAGE": TOKEN}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    make = config_factory(tmp_path, courses(sources), env=env, auth="token", tokens_env="F2GIT_TEST_FETCH",
                          manage_tokens_env="F2GIT_TEST_MANAGE")
    student, teacher = {"Authorization": f"Bearer {FETCH_TOKEN}"}, {"Authorization": f"Bearer {TOKEN}"}
    hidden = str(sources["cs102"].path)
    sources["cs102"].path.rename(tmp_path / "moved")  # the sync fails with an error naming the path
    with RunningServer(make) as server:
        status, _, answer = server.request("POST", "/api/courses/cs102/refresh", body=b"", headers=teacher)
        assert status == 200 and hidden in json.loads(answer)["error"]
        status, _, answer = server.request("GET", "/api/courses/cs102", headers=student)
        seen = json.loads(answer)
        assert status == 200 and hidden.encode() not in answer
        assert set(seen) == {"name", "git_url", "commit", "last_check", "last_change", "refreshing", "ok"}
        assert seen["ok"] is False and seen["commit"] is None
        # the manager sees everything: the error, the schedule, the history
        status, _, answer = server.request("GET", "/api/courses/cs102", headers=teacher)
        full = json.loads(answer)
        assert hidden in full["last_error"] and "next_refresh" in full and "history" in full
        listed = server.request("GET", "/api/courses", headers=student)[2]
        assert hidden.encode() not in listed and b"next_refresh" not in listed and b"next_release" not in listed
        # git tells a student that the course failed, not why
        url = server.git_url("cs102").replace("http://", f"http://student:{FETCH_TOKEN}@")
        # (ls-remote succeeds on a placeholder, so nbgitpuller streams the clone that says why)
        refused = git("clone", "--depth", "1", url, str(tmp_path / "student-clone"), check=False)
        assert b"has no snapshot yet: the last sync failed; your instructor sees why" in refused.stderr
        assert hidden.encode() not in refused.stderr
