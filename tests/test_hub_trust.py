"""Trust boundaries on a real, shared JupyterHub (configurable-http-proxy, f2git as the service
`f2git hub-config` sets up, behind the hub at /services/courses, students' real servers with
nbgitpuller and pullhook):

- the hub's public origin also serves every user's server: a link to mallory's server there
  gets none of the victim's tokens (mallory's server records every request it gets);
- the LMS secrets f2git needs never reach the hub's database, and the service still uses them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from f2git.config import load
from f2git.hubconfig import render
from f2git.links import repo_url
from tests.hubhelpers import CHP, GitHost, Hub, free_port, git, server_token, shown
from tests.repohelpers import SourceFolder

pytestmark = pytest.mark.slow

COURSE = "cs101"
SECRETS = {"F2GIT_TEST_MIRROR_SECRET": "mirror-secret-Zq81-distinctive",
           "F2GIT_TEST_CANVAS_SECRET": "canvas-secret-Lw44-distinctive"}
RECORDER = Path(__file__).resolve().parent / "servers" / "recording_server.py"
# mallory's server is one she controls: here it records what reaches it
MALLORY = f'''
import sys as _sys
def _mallorys_own_server(spawner):
    if spawner.user.name == "mallory":
        spawner.cmd = [_sys.executable, {str(RECORDER)!r}]
        spawner.args = []
c.Spawner.pre_spawn_hook = _mallorys_own_server
'''


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    work = tmp_path_factory.mktemp("hub-trust")
    source = SourceFolder(work / "source")
    source.write("README.md", "# CS 101\n")
    with GitHost(work / "githost", token=SECRETS["F2GIT_TEST_MIRROR_SECRET"], public_read=True) as mirror, \
            pytest.MonkeyPatch.context() as patch:
        mirror.create(COURSE)
        running = Hub(work / "jupyterhub", MALLORY, groups={"students": {"users": ["ana", "mallory"]}})
        config_path = work / "f2git.toml"
        config_path.write_text(f'''
[server]
host = "127.0.0.1"
port = {free_port()}
data_dir = "{work / 'data'}"
public_url = "{running.url}/services/courses"
service_name = "courses"
refresh_ttl = 0
auth = "jupyterhub"
[hub]
pullhook = true
[courses.{COURSE}]
source = "local"
path = "{source.path}"
schedule = 0
mirror = "{mirror.url(COURSE)}"
mirror_token_env = "F2GIT_TEST_MIRROR_SECRET"
[courses.ml]
source = "canvas"
url = "http://127.0.0.1:9"
course_id = 7
token_env = "F2GIT_TEST_CANVAS_SECRET"
schedule = 0
''')
        for name, value in SECRETS.items():
            patch.setenv(name, value)  # the hub's environment, as its systemd unit would set it
        config = load(config_path)
        with (running.work / "jupyterhub_config.py").open("a") as hub_config:
            hub_config.write(render(config))
        with running:
            running.f2git = config
            running.mirror = mirror
            running.wait_for_url(f"{config.server.public_url}/healthz", "the f2git service behind the hub")
            running.tokens = {name: running.start_user(name) for name in ("ana", "mallory")}
            yield running


def recorded(hub: Hub) -> list[dict]:
    log = hub.work / "home" / "mallory" / "requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_link_to_another_users_server_on_the_hubs_origin_gets_no_token(hub):
    victim = server_token(hub.hub_port, "ana")  # what pullhook would send
    # mallory's server is reachable on the hub's origin, and records what reaches it
    canary = requests.get(f"{hub.url}/user/mallory/x/api/courses/{COURSE}/remote",
                          headers={"Authorization": "token canary-1"}, timeout=30)
    assert canary.status_code == 200 and any("canary-1" in json.dumps(r) for r in recorded(hub))

    link = f"f2git::{hub.url}/user/mallory/x/git/{COURSE}"
    events = hub.click("ana", hub.tokens["ana"], link, targetpath="crafted")
    assert events[-1]["phase"] == "error", events
    assert "does not trust" in shown(events) and "nothing was sent" in shown(events), events
    heard = json.dumps(recorded(hub))
    assert victim not in heard and hub.tokens["ana"] not in heard
    assert [r["path"] for r in recorded(hub) if "/x/" in r["path"]] == [f"/user/mallory/x/api/courses/{COURSE}/remote"]

    # f2git's exact base URL behind the same origin (from hub-config) still gets ana's clicks
    assert hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, COURSE))[-1] == {"phase": "finished"}
    assert victim not in json.dumps(recorded(hub))


def test_no_lms_secret_in_the_hubs_database_and_the_service_still_uses_them(hub):
    # a click syncs the course and pushes it to its mirror: that needs the mirror secret
    assert hub.click("ana", hub.tokens["ana"], repo_url(hub.f2git, COURSE), targetpath="mirrored")[-1] == \
        {"phase": "finished"}
    assert git("--git-dir", str(hub.mirror.root / f"{COURSE}.git"), "rev-parse", "main").strip()
    assert (hub.work / "home" / "ana" / "mirrored" / "README.md").read_text() == "# CS 101\n"

    database = b"".join(path.read_bytes() for path in hub.work.glob("jupyterhub.sqlite*"))
    assert b"F2GIT_ENV_FILE" in database  # the service's environment is stored: only the file's name
    for value in SECRETS.values():
        assert value.encode() not in database
        assert value not in hub.log()
    secrets_file = hub.f2git.server.data_dir / "hub-secrets.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
