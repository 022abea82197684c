"""Server auth policies: who may start the server how, and which requests identify whom."""
import asyncio
import base64
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from f2git.config import ConfigError, parse
from f2git.server.auth import HubAuth, Identity, NoAuth, TokenAuth, make_auth, request_token

SECRET = "tok-7f3Qz9-distinctive"


def config(server=None, hub=None, courses=None, env=None):
    data = {"server": server or {}, "hub": hub or {}, "courses": courses or {}}
    return parse(data, Path("/etc/f2git/f2git.toml"), env or {})


def handler(authorization=None):
    headers = HTTPHeaders({"Host": "127.0.0.1:8765"})
    if authorization is not None:
        headers["Authorization"] = authorization
    return SimpleNamespace(request=HTTPServerRequest(start_line=RequestStartLine("GET", "/git/demo/info/refs", "HTTP/1.1"),
                                                    headers=headers))


def identify(auth, authorization=None):
    return asyncio.run(auth.identify(handler(authorization)))


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_none_is_allowed_on_loopback(host):
    assert isinstance(make_auth(config({"host": host})), NoAuth)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "f2git.example.edu"])
def test_none_refuses_a_public_address_naming_the_key(host):
    with pytest.raises(ConfigError) as error:
        make_auth(config({"host": host}))
    assert "key 'auth'" in str(error.value) and repr(host) in str(error.value)


def test_token_mode_needs_tokens_env():
    with pytest.raises(ConfigError, match="key 'tokens_env'"):
        make_auth(config({"auth": "token"}))


def test_token_mode_refuses_an_empty_variable():
    env = {"F2GIT_TOKENS": " , "}
    with pytest.raises(ConfigError, match="F2GIT_TOKENS holds no tokens"):
        make_auth(config({"auth": "token", "tokens_env": "F2GIT_TOKENS"}, env=env), env=env)


def test_token_mode_accepts_each_token_as_bearer_token_or_basic_password():
    env = {"F2GIT_TOKENS": f"other-token, {SECRET}"}
    auth = make_auth(config({"auth": "token", "tokens_env": "F2GIT_TOKENS", "host": "0.0.0.0"}, env=env), env=env)
    assert isinstance(auth, TokenAuth)
    for header in (f"Bearer {SECRET}", f"token {SECRET}", f"TOKEN {SECRET}", basic("git", SECRET),
                   basic("", "other-token")):
        identity = identify(auth, header)
        assert identity is not None and identity.kind == "token", header


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", f"Bearer {SECRET}x",
                                    basic(SECRET, "wrong"), "Basic !!notbase64", f"Digest {SECRET}"])
def test_token_mode_rejects_missing_or_wrong_credentials(header):
    env = {"F2GIT_TOKENS": SECRET}
    auth = make_auth(config({"auth": "token", "tokens_env": "F2GIT_TOKENS"}, env=env), env=env)
    assert identify(auth, header) is None


def test_request_token_reads_basic_password_with_colons():
    assert request_token(handler(basic("x", "a:b:c"))) == "a:b:c"


def test_jupyterhub_mode_names_the_missing_hub_variables():
    with pytest.raises(ConfigError) as error:
        make_auth(config({"auth": "jupyterhub"}), env={"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api"})
    assert "JUPYTERHUB_API_TOKEN" in str(error.value) and "JUPYTERHUB_API_URL" not in str(error.value)


def hub_auth(instructors_group=""):
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api", "JUPYTERHUB_API_TOKEN": SECRET,
           "JUPYTERHUB_SERVICE_NAME": "courses"}
    cfg = config({"auth": "jupyterhub", "host": "0.0.0.0"}, {"instructors_group": instructors_group},
                 {"open": {"source": "local", "path": "/tmp"},
                  "ml": {"source": "local", "path": "/tmp", "groups": ["ml-students", "ml-tutors"]}})
    return make_auth(cfg, env=env), cfg


def test_jupyterhub_groups_restrict_fetching():
    auth, cfg = hub_auth()
    assert isinstance(auth, HubAuth) and auth.access_scope == "access:services!service=courses"
    student = Identity("ana", kind="user", groups=frozenset({"ml-tutors"}))
    outsider = Identity("bob", kind="user", groups=frozenset({"bio"}))
    admin = Identity("root", kind="user", admin=True)
    assert auth.may_fetch(student, cfg.courses["ml"]) and auth.may_fetch(outsider, cfg.courses["open"])
    assert not auth.may_fetch(outsider, cfg.courses["ml"])
    assert auth.may_fetch(admin, cfg.courses["ml"])


def test_jupyterhub_token_without_service_access_may_do_nothing():
    auth, cfg = hub_auth("teachers")
    no_access = Identity("ana", kind="user", groups=frozenset({"ml-students", "teachers"}), admin=True,
                         service_access=False)
    assert not auth.may_fetch(no_access, cfg.courses["open"])
    assert not auth.may_manage(no_access, None)


def test_jupyterhub_instructors_group_and_admins_manage():
    auth, cfg = hub_auth("teachers")
    assert auth.may_manage(Identity("t", kind="user", groups=frozenset({"teachers"})), cfg.courses["ml"])
    assert auth.may_manage(Identity("root", kind="user", admin=True), None)
    assert not auth.may_manage(Identity("s", kind="user", groups=frozenset({"ml-students"})), cfg.courses["ml"])
    assert not auth.may_manage(Identity("grader", kind="service"), None)
    no_group, _ = hub_auth("")
    assert not no_group.may_manage(Identity("s", kind="user", groups=frozenset({""})), None)


def test_an_instructor_outside_a_courses_groups_may_fetch_the_course_they_manage():
    """Their dashboard shows the files, and "Try this link" must open for them too."""
    auth, cfg = hub_auth("teachers")
    teacher = Identity("tina", kind="user", groups=frozenset({"teachers"}))
    assert not auth._member(teacher, cfg.courses["ml"]) and auth.may_fetch(teacher, cfg.courses["ml"])
    assert not auth.may_fetch(Identity("bob", kind="user", groups=frozenset({"bio"})), cfg.courses["ml"])


def test_jupyterhub_read_metrics_scope_may_scrape_but_not_manage(monkeypatch):
    """The Prometheus that scrapes the hub's /hub/metrics (a service token with read:metrics)
    may read f2git's /metrics, and nothing more."""
    import asyncio

    auth, cfg = hub_auth("teachers")
    models = {
        "scraper-token": {"kind": "service", "name": "prometheus",
                          "scopes": ["read:metrics", "access:services!service=courses"]},
        "grader-token": {"kind": "service", "name": "grader", "scopes": ["access:services!service=courses"]},
    }

    async def user_for_token(token, sync=True):
        return models.get(token)

    monkeypatch.setattr(auth.hub, "user_for_token", user_for_token)

    class Handler:
        def __init__(self, token):
            self.request = HTTPServerRequest(start_line=RequestStartLine("GET", "/metrics", "HTTP/1.1"),
                                             headers=HTTPHeaders({"Authorization": f"token {token}",
                                                                  "Host": "127.0.0.1"}))

    scraper = asyncio.run(auth.identify(Handler("scraper-token")))
    grader = asyncio.run(auth.identify(Handler("grader-token")))
    assert scraper.read_metrics and auth.may_read_metrics(scraper)
    assert not auth.may_manage(scraper, None) and not auth.may_manage(scraper, cfg.courses["ml"])
    assert not grader.read_metrics and not auth.may_read_metrics(grader)
    assert auth.may_read_metrics(Identity("t", kind="user", groups=frozenset({"teachers"})))


# -- token roles -------------------------------------------------------------------------------

MANAGER = "tok-manager-Zr81-distinctive"


def token_auth(env, **server):
    return make_auth(config({"auth": "token", **server}, env=env), env=env)


def test_fetch_tokens_fetch_and_manage_tokens_also_manage():
    env = {"F2GIT_TOKENS": f"{SECRET}, other", "F2GIT_MANAGERS": MANAGER}
    auth = token_auth(env, tokens_env="F2GIT_TOKENS", manage_tokens_env="F2GIT_MANAGERS")
    cfg = config(courses={"c": {"source": "local", "path": "/tmp"}})
    student, teacher = identify(auth, f"Bearer {SECRET}"), identify(auth, basic("git", MANAGER))
    assert auth.may_fetch(student, cfg.courses["c"]) and not auth.may_manage(student, cfg.courses["c"])
    assert not auth.may_read_metrics(student) and not auth.may_manage(student, None)
    assert auth.may_fetch(teacher, cfg.courses["c"]) and auth.may_manage(teacher, None)
    assert auth.may_read_metrics(teacher)
    assert identify(auth, "Bearer nope") is None


def test_an_existing_tokens_env_alone_still_manages():
    """Configs from before roles: without manage_tokens_env, tokens_env's tokens keep every right."""
    env = {"F2GIT_TOKENS": SECRET}
    auth = token_auth(env, tokens_env="F2GIT_TOKENS")
    assert auth.may_manage(identify(auth, f"Bearer {SECRET}"), None)


def test_managers_alone_are_enough_and_an_empty_variable_is_named():
    env = {"F2GIT_MANAGERS": MANAGER, "EMPTY": " "}
    assert identify(token_auth(env, manage_tokens_env="F2GIT_MANAGERS"), f"Bearer {MANAGER}").admin
    with pytest.raises(ConfigError, match="key 'manage_tokens_env': environment variable EMPTY holds no tokens"):
        token_auth(env, tokens_env="F2GIT_MANAGERS", manage_tokens_env="EMPTY")


# -- the hub's group lookup: answers are cached, failures are not ------------------------------

class FakeHubApi:
    """The two hub API calls f2git makes, on 127.0.0.1: who holds a token, a user's groups.
    `failing = True` answers the group lookup with 502, as a hub behind a restarting proxy."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.httpserver import send_json

        owner = self
        self.failing = True
        self.lookups = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/hub/api/user" and self.headers.get("Authorization") == "token ana-token":
                    self.answer(200, {"kind": "user", "name": "ana", "scopes": ["access:services!service=courses"]})
                elif self.path == "/hub/api/users/ana":
                    owner.lookups += 1
                    if owner.failing:
                        self.answer(502, {"message": "proxy error"})
                    else:
                        self.answer(200, {"name": "ana", "admin": False, "groups": ["ml-students"]})
                else:
                    self.answer(403, {"message": "no"})

            def answer(self, status, data):
                send_json(self, status, data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_failing_hub_is_asked_again_and_the_student_reads_that_it_is_unreachable(tmp_path, monkeypatch):
    """Before: one 5xx from the hub was cached as "no groups" for a minute: 403 for every
    group-restricted student. Now: 503 saying the hub is unreachable, and the next request
    asks again."""
    from tests.serverhelpers import RunningServer, config_factory

    with FakeHubApi() as hub:
        for variable, value in {"JUPYTERHUB_API_URL": hub.url, "JUPYTERHUB_API_TOKEN": SECRET,
                                "JUPYTERHUB_SERVICE_NAME": "courses"}.items():
            monkeypatch.setenv(variable, value)
        make = config_factory(tmp_path, {"ml": {"source": "local", "path": str(tmp_path), "schedule": 0,
                                                "groups": ["ml-students"]}}, auth="jupyterhub")
        with RunningServer(make) as server:
            ana = {"Authorization": "token ana-token"}
            status, headers, answer = server.request("GET", "/api/courses/ml", headers=ana)
            assert status == 503 and json.loads(answer) == {
                "error": "JupyterHub could not be reached to check your groups; try again in a minute"}
            assert server.request("GET", "/api/courses/ml", headers=ana)[0] == 503
            assert hub.lookups == 2  # asked again, not cached
            hub.failing = False
            status, _, answer = server.request("GET", "/api/courses/ml", headers=ana)
            assert status == 200 and json.loads(answer)["name"] == "ml"
            assert server.request("GET", "/api/courses/ml", headers=ana)[0] == 200
            assert hub.lookups == 3  # an answer is cached
            hub.__exit__()  # the hub is down: who holds a new token cannot be checked either
            status, _, answer = server.request("GET", "/api/courses/ml", headers={"Authorization": "token bob-token"})
            assert status == 503 and "JupyterHub could not be reached" in json.loads(answer)["error"]
