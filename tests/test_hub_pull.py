"""The whole hub side with real components: JupyterHub + configurable-http-proxy, f2git as a
hub service configured by `f2git hub-config`, students' jupyter-servers with nbgitpuller and
pullhook; clicks go through nbgitpuller's own endpoint."""
from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from f2git.config import load
from f2git.hubconfig import render
from f2git.links import repo_url
from tests.heldrequests import hold_requests, release, still_open
from tests.hubhelpers import CHP, GitHost, Hub, browser_login, free_port, server_token, service_toml, shown
from tests.repohelpers import SourceFolder

pytestmark = pytest.mark.slow

COURSE = "cs101"
MIRROR_TOKEN = "mirror-tok-Ub3-distinctive"
ADDRESS_CAP = 50  # every request reaches f2git from one address (the proxy's, or loopback)
GROUPS = {"cs101-students": {"users": ["ana"]}, "teachers": {"users": ["tina"]}, "bio": {"users": ["bob", "cara"]}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    work = tmp_path_factory.mktemp("hub")
    source = SourceFolder(work / "source")
    source.write("README.md", "# CS 101\n")
    source.write("week1/intro.ipynb", '{"cells": []}\n')
    f2git_port = free_port()
    config_path = work / "f2git.toml"
    config_path.write_text(service_toml(f2git_port, work / "data", server={"max_connections_per_address": ADDRESS_CAP},
                                        instructors_group="teachers") + f'''
[courses.{COURSE}]
source = "local"
path = "{source.path}"
schedule = 0
groups = ["cs101-students"]
''')
    with GitHost(work / "githost", token=MIRROR_TOKEN, public_read=True) as mirror, \
            pytest.MonkeyPatch.context() as patch:
        mirror.create("ml")
        flaky = SourceFolder(work / "flaky")
        flaky.write("notes.md", "notes\n")
        with config_path.open("a") as extra:
            extra.write(f'[courses.ml]\nsource = "local"\npath = "{source.path}"\nschedule = 0\n'
                        f'mirror = "{mirror.url("ml")}"\nmirror_token_env = "MIRROR_TOKEN"\n')
            # a source that never worked, and one that works until the test removes it
            extra.write(f'[courses.empty]\nsource = "local"\npath = "{work / "missing"}"\nschedule = 0\n'
                        f'[courses.flaky]\nsource = "local"\npath = "{flaky.path}"\nschedule = 0\n')
        patch.setenv("MIRROR_TOKEN", MIRROR_TOKEN)  # the hub hands it to the service (hub-config)
        config = load(config_path)
        with Hub(work / "jupyterhub", render(config), groups=GROUPS) as running:
            running.f2git = config
            running.f2git_url = f"http://127.0.0.1:{f2git_port}"
            running.source = source
            running.mirror = mirror
            running.flaky = flaky
            running.wait_for_url(f"{running.f2git_url}/healthz", "the f2git service")
            running.tokens = {name: running.start_user(name) for name in ("ana", "bob")}
            yield running


def home(hub: Hub, user: str) -> Path:
    return hub.work / "home" / user


def test_a_student_in_the_group_gets_the_course_and_the_next_click_brings_a_change(hub):
    repo = repo_url(hub.f2git, COURSE)
    assert repo == f"f2git::{hub.f2git_url}/git/{COURSE}"
    events = hub.click("ana", hub.tokens["ana"], repo)
    assert events[-1] == {"phase": "finished"}, events
    folder = home(hub, "ana") / COURSE  # named after the URL's last segment
    assert (folder / "README.md").read_text() == "# CS 101\n"
    assert (folder / "week1" / "intro.ipynb").exists()

    hub.source.write("week2/loops.ipynb", "{}\n")  # the instructor releases more
    (folder / "README.md").write_text("# CS 101\nmy notes\n")  # the student edits
    events = hub.click("ana", hub.tokens["ana"], repo)
    assert events[-1] == {"phase": "finished"}, events
    assert (folder / "week2" / "loops.ipynb").read_text() == "{}\n"
    assert "my notes" in (folder / "README.md").read_text()

    # the server's token is what authenticated the fetch, and it is in no repo config or log
    token = server_token(hub.hub_port, "ana")
    config = (folder / ".git" / "config").read_text()
    assert token not in config and "extraheader" not in config.lower()
    assert token not in hub.log() and hub.tokens["ana"] not in hub.log()
    assert all(token not in str(event) for event in events)


def test_a_student_outside_the_course_groups_is_refused(hub):
    events = hub.click("bob", hub.tokens["bob"], repo_url(hub.f2git, COURSE))
    assert events[-1]["phase"] == "error", events
    assert not (home(hub, "bob") / COURSE).exists()
    token = server_token(hub.hub_port, "bob")
    direct = requests.get(f"{hub.f2git_url}/git/{COURSE}/info/refs", params={"service": "git-upload-pack"},
                          headers={"Authorization": f"token {token}"}, timeout=30)
    assert direct.status_code == 403


def test_a_student_reads_why_a_click_failed_on_nbgitpullers_page(hub):
    # not in the course's groups
    events = hub.click("bob", hub.tokens["bob"], repo_url(hub.f2git, COURSE))
    assert events[-1]["phase"] == "error"
    assert "you (bob) are not in course 'cs101'" in shown(events), events
    assert "Remote content unavailable" not in shown(events)
    # no such course (a wrong link)
    events = hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, "cs-101"))
    assert events[-1]["phase"] == "error" and "there is no course 'cs-101' here" in shown(events), events
    # the course has no snapshot: the student reads that its last sync failed (not the
    # source's error: it names sources and paths, for the instructor's eyes)
    events = hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, "empty"))
    assert events[-1]["phase"] == "error"
    assert "course empty has no snapshot yet: the last sync failed" in shown(events), events
    assert "missing" not in shown(events)
    assert not (home(hub, "ana") / "empty").exists()
    # the source fails after a snapshot: the click works and says how old the files are
    events = hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, "flaky"))
    assert events[-1] == {"phase": "finished"}, events
    shutil.rmtree(hub.flaky.path)
    events = hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, "flaky"))
    assert events[-1] == {"phase": "finished"}, events
    assert "flaky: the files could not be updated from local folder since" in shown(events), events
    assert "you get the last snapshot of" in shown(events) and " old." in shown(events)
    # f2git's log names who was refused and why
    assert "refused bob's pull of course cs101: HTTP 403" in hub.log()


def test_a_student_whose_hub_login_f2git_cannot_accept_reads_that_they_are_not_logged_in(hub):
    cara = hub.start_user("cara")
    # the token pullhook sends (the server's own) is revoked, as when a login expired
    server = server_token(hub.hub_port, "cara")
    tokens = hub.api("GET", "/users/cara/tokens").json()["api_tokens"]
    for token in tokens:
        if (token.get("note") or "").startswith("Server at"):
            assert hub.api("DELETE", f"/users/cara/tokens/{token['id']}").status_code == 204
    assert requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {server}"},
                        timeout=30).status_code == 403, tokens  # revoked
    events = hub.click("cara", cara, repo_url(hub.f2git, "flaky"), targetpath="cara-flaky")
    assert events[-1]["phase"] == "error", events
    assert "you are not logged in to f2git for course 'flaky'" in shown(events), events
    assert server not in shown(events)


def test_git_without_a_token_or_with_a_bad_one_is_refused(hub):
    url = f"{hub.f2git_url}/git/{COURSE}/info/refs"
    anonymous = requests.get(url, params={"service": "git-upload-pack"}, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="f2git"'
    forged = requests.get(url, params={"service": "git-upload-pack"}, timeout=30,
                          headers={"Authorization": "token forged-tok-Xr5-distinctive"})
    assert forged.status_code == 401
    assert "forged-tok-Xr5" not in hub.log()
    # a token in the URL would land in access logs: it does not count
    throwaway = hub.api("POST", "/users/ana/tokens", json={"note": "in a URL"}).json()["token"]
    in_url = requests.get(f"{hub.f2git_url}/api/courses", params={"token": throwaway}, timeout=30)
    assert in_url.status_code == 401
    # git itself, with the student's server token as the Basic password (what a credential helper gives)
    token = server_token(hub.hub_port, "ana")
    clone = subprocess.run(["git", "-c", f"http.extraHeader=Authorization: Basic {basic('ana', token)}",
                            "ls-remote", f"{hub.f2git_url}/git/{COURSE}"],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    assert clone.returncode == 0 and "refs/heads/main" in clone.stdout, clone.stderr


def test_instructors_manage_and_students_only_read(hub):
    tina = hub.start_user("tina")
    refresh = f"{hub.f2git_url}/api/courses/{COURSE}/refresh"
    # a student's refresh is a click (at most one source check per refresh_ttl); deletions are not hers to confirm
    student = {"Authorization": f"token {hub.tokens['ana']}"}
    click = requests.post(refresh, headers=student, timeout=60)
    assert click.status_code == 200 and set(click.json()) == {"course", "outcome", "commit"}
    assert requests.post(refresh, headers=student, json={"allow_mass_delete": True}, timeout=60).status_code == 403
    answer = requests.post(refresh, headers={"Authorization": f"token {tina}"}, timeout=60)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    link = requests.get(f"{hub.f2git_url}/api/courses/{COURSE}/link", params={"path": "week 1/a&b.ipynb"},
                        headers={"Authorization": f"token {hub.tokens['ana']}"}, timeout=30).json()
    assert link["repo"] == repo_url(hub.f2git, COURSE)
    assert link["link"].startswith(f"{hub.f2git.hub.url}/hub/user-redirect/git-pull?repo=f2git%3A%3Ahttp")


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_pull_through_the_hubs_proxy_at_the_service_prefix(hub):
    """Zero to JupyterHub style: students' servers reach f2git at <hub>/services/f2git/."""
    repo = f"f2git::{hub.url}/services/f2git/git/{COURSE}"
    events = hub.click("ana", hub.tokens["ana"], repo, targetpath="via-proxy")
    assert events[-1] == {"phase": "finished"}, events
    assert (home(hub, "ana") / "via-proxy" / "README.md").read_text() == "# CS 101\n"
    events = hub.click("bob", hub.tokens["bob"], repo, targetpath="via-proxy")
    assert events[-1]["phase"] == "error"


def test_one_hub_user_holding_requests_through_the_proxy_locks_no_one_out(hub):
    """bob holds more requests than the address cap through configurable-http-proxy (which
    forwards the headers and a partial body at once), each body trickling: before, f2git
    counted them against the proxy's one address (those over its cap got 503, and the address
    was full for everyone). Now they count against hub user bob, all are held, and ana's
    click, through the proxy too, works meanwhile."""
    held = hold_requests(hub.port, hub.tokens["bob"], ADDRESS_CAP + 10, course="ml", body=1000, sent=10,
                         prefix="/services/f2git")
    try:
        repo = f"f2git::{hub.url}/services/f2git/git/{COURSE}"
        events = hub.click("ana", hub.tokens["ana"], repo, targetpath="while-bob-holds")
        assert events[-1] == {"phase": "finished"}, events
        assert (home(hub, "ana") / "while-bob-holds" / "README.md").read_text() == "# CS 101\n"
        assert still_open(held) == ADDRESS_CAP + 10  # bob keeps what he holds: it costs him alone
    finally:
        release(held)


def test_browsers_log_in_with_the_hubs_oauth_and_see_only_their_courses(hub):
    prefix = "/services/f2git"
    for user, visible in (("ana", [COURSE, "ml", "empty", "flaky"]), ("bob", ["ml", "empty", "flaky"])):  # no groups
        browser = browser_login(hub, user)
        assert browser.get(f"{hub.url}{prefix}/api/courses", timeout=30).status_code == 401
        answer = browser.get(f"{hub.url}{prefix}/login", params={"next": f"{prefix}/api/courses"}, timeout=60)
        assert answer.status_code == 200, answer.text[:500]
        assert answer.url == f"{hub.url}{prefix}/api/courses"
        assert [c["name"] for c in answer.json()["courses"]] == visible
        browser.close()
    # a next outside the service is not followed (no open redirect)
    browser = browser_login(hub, "ana")
    answer = browser.get(f"{hub.url}{prefix}/login", params={"next": "https://evil.example/"}, timeout=60,
                         allow_redirects=True)
    assert answer.url.startswith(f"{hub.url}{prefix}/")
    browser.close()


def test_a_mirrored_course_is_pulled_from_the_mirror_with_the_hub_token_sent_only_to_f2git(hub):
    repo = repo_url(hub.f2git, "ml")
    events = hub.click("ana", hub.tokens["ana"], repo)
    assert events[-1] == {"phase": "finished"}, events
    assert (home(hub, "ana") / "ml" / "README.md").exists()
    assert hub.mirror.upload_requests, "the clone came from the mirror host"
    hub.source.write("week3/new.ipynb", "{}\n")
    events = hub.click("ana", hub.tokens["ana"], repo)
    assert events[-1] == {"phase": "finished"}, events
    assert (home(hub, "ana") / "ml" / "week3" / "new.ipynb").exists()  # refreshed, pushed, then pulled
    token = server_token(hub.hub_port, "ana")
    assert all(token not in header for header in hub.mirror.authorizations)
    assert MIRROR_TOKEN not in hub.log()


def test_a_crafted_link_never_sends_a_students_token_to_a_stranger(hub):
    """An nbgitpuller link is a URL anyone can write: one naming another host makes the
    student's click fail with the reason, and that host hears nothing (no token)."""
    from tests.httpserver import FileServer
    with FileServer() as stranger:
        stranger.put(f"/api/courses/{COURSE}/remote", b'{"course": "cs101", "git_url": "", "mirror": null}')
        events = hub.click("ana", hub.tokens["ana"], f"f2git::http://127.0.0.1:{stranger.port}/git/{COURSE}",
                           targetpath="crafted")
        assert events[-1]["phase"] == "error", events
        assert "does not trust" in shown(events) and "nothing was sent" in shown(events), events
        assert stranger.requests == []
    # the hub's own f2git still gets the student's clicks
    assert hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, COURSE))[-1] == {"phase": "finished"}
