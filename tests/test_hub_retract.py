"""Retract through a real JupyterHub: the late joiner with pullhook.

JupyterHub + configurable-http-proxy, f2git as the hub service that `f2git hub-config` sets
up, reached at <hub>/services/f2git (its public_url, so links and pullhook go through the
hub's proxy); students' servers are real jupyter-servers with nbgitpuller and pullhook, and
every click is nbgitpuller's own endpoint on the student's server. An early student and a
late joiner (whose depth-1 clone starts at the leaked snapshot) edit and click; an
instructor retracts through the hub route; both next clicks merge with their edits kept,
and the retracted bytes are no longer served to a student's token.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from f2git.config import load
from f2git.hubconfig import render
from f2git.links import repo_url
from tests.hubhelpers import CHP, Hub, free_port, git, server_token, service_toml, shown
from tests.repohelpers import SourceFolder

pytestmark = pytest.mark.slow

COURSE = "cs101"
LEAK = "solutions/exam.ipynb"
SECRET = "EXAM-SOLUTIONS-Hb7q: the answer is 42"
GROUPS = {"cs101-students": {"users": ["ana", "ben"]}, "teachers": {"users": ["tina"]}}
EXERCISE = "".join(f"line {n}\n" for n in range(30))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        raise RuntimeError(f"configurable-http-proxy is missing at {CHP}: run `make test-deps`")
    work = tmp_path_factory.mktemp("hub-retract")
    source = SourceFolder(work / "source")
    source.write("README.md", "# CS 101\n")
    source.write("week1/exercise.ipynb", EXERCISE)
    running = Hub(work / "jupyterhub", "", groups=GROUPS)
    config_path = work / "f2git.toml"
    config_path.write_text(service_toml(free_port(), work / "data", server={"public_url": f"{running.url}/services/f2git"},
                                        instructors_group="teachers") +
                           f'[courses.{COURSE}]\nsource = "local"\npath = "{source.path}"\nschedule = 0\n'
                           'groups = ["cs101-students"]\n')
    config = load(config_path)
    with (running.work / "jupyterhub_config.py").open("a") as hub_config:
        hub_config.write(render(config))
    with running:
        running.f2git = config
        running.service = config.server.public_url
        running.source = source
        running.wait_for_url(f"{running.service}/healthz", "the f2git service behind the hub")
        running.tokens = {name: running.start_user(name) for name in ("ana", "ben")}
        yield running


def folder(hub: Hub, user: str) -> Path:
    return hub.work / "home" / user / COURSE  # nbgitpuller names it after the URL's last segment


def click(hub: Hub, user: str) -> str:
    events = hub.click(user, hub.tokens[user], repo_url(hub.f2git, COURSE))
    assert events[-1] == {"phase": "finished"}, shown(events)
    return shown(events)


def edit(hub: Hub, user: str) -> str:
    """What the student's Jupyter writes: a changed exercise and a new file of their own."""
    exercise = folder(hub, user) / "week1" / "exercise.ipynb"
    mine = exercise.read_text().replace("line 3\n", f"line 3: {user}'s answer\n")
    exercise.write_text(mine)
    (folder(hub, user) / "my-notes.md").write_text(f"notes of {user}\n")
    return mine


def retract(hub: Hub, token: str, *paths: str) -> requests.Response:
    return requests.post(f"{hub.service}/api/courses/{COURSE}/retract", json={"paths": list(paths)},
                         headers={"Authorization": f"token {token}"}, timeout=120)


def student_git(token: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Plain git with a student's server token, as anything in their server could run it."""
    return subprocess.run(["git", "-c", f"http.extraHeader=Authorization: token {token}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                               "GIT_TERMINAL_PROMPT": "0"})


def test_after_a_retract_the_early_student_and_the_late_joiner_click_on_with_edits_kept(hub, tmp_path):
    click(hub, "ana")  # before the leak
    hub.source.write(LEAK, SECRET + "\n")  # released by mistake
    click(hub, "ben")  # the late joiner: a depth-1 clone whose root is the leaked snapshot
    ben = folder(hub, "ben")
    assert (ben / LEAK).read_text() == SECRET + "\n"
    assert git("rev-parse", "--is-shallow-repository", cwd=ben).strip() == "true"
    leaked = git("rev-parse", "HEAD", cwd=ben).strip()
    leaked_blob = git("rev-parse", f"HEAD:{LEAK}", cwd=ben).strip()
    mine = {user: edit(hub, user) for user in ("ana", "ben")}
    for user in ("ana", "ben"):  # their edits become commits of their own
        click(hub, user)

    # a student may not retract, even through the hub's route; the instructor (teachers group) may
    assert retract(hub, hub.tokens["ana"], LEAK).status_code == 403
    tina = hub.api("POST", "/users/tina/tokens", json={"note": "instructor"}).json()["token"]
    answer = retract(hub, tina, LEAK)
    assert answer.status_code == 200, answer.text
    assert answer.json()["first"] == leaked and answer.json()["held"] == [LEAK]
    hub.source.write("week2/loops.ipynb", "{}\n")  # the next release; the source still offers the leak

    logs = {user: click(hub, user) for user in ("ana", "ben")}
    for user in ("ana", "ben"):
        mine_now = folder(hub, user)
        assert (mine_now / "week1" / "exercise.ipynb").read_text() == mine[user]
        assert (mine_now / "my-notes.md").read_text() == f"notes of {user}\n"
        assert (mine_now / "week2" / "loops.ipynb").read_text() == "{}\n"
        assert LEAK not in git("ls-tree", "-r", "--name-only", "origin/main", cwd=mine_now)
        assert "Backup and resync" not in logs[user], logs[user]
    assert "your copy was linked to the corrected history" in logs["ben"], logs["ben"]
    assert "could not link" not in logs["ben"]

    # the next snapshot merges as usual for the bridged late joiner
    hub.source.write("week3/more.ipynb", "{}\n")
    click(hub, "ben")
    assert (ben / "week3" / "more.ipynb").read_text() == "{}\n"
    assert (ben / "week1" / "exercise.ipynb").read_text() == mine["ben"]

    # the retracted bytes are not served to a student's token any more: not by id, not in a clone
    url = f"{hub.service}/git/{COURSE}"
    token = server_token(hub.hub_port, "ben")  # what pullhook sends from ben's server
    for version in (0, 2):
        clone = tmp_path / f"clone-v{version}"
        done = student_git(token, "-c", f"protocol.version={version}", "clone", "-q", url, str(clone))
        assert done.returncode == 0, done.stderr
        history = student_git(token, "log", "--all", "-p", cwd=clone)
        assert SECRET not in history.stdout
        for old in (leaked, leaked_blob):
            fetched = student_git(token, "-c", f"protocol.version={version}", "fetch", "-q", "origin", old, cwd=clone)
            assert fetched.returncode != 0, f"{old} was served over protocol v{version}"
    status = requests.get(f"{hub.service}/api/courses/{COURSE}", headers={"Authorization": f"token {tina}"},
                          timeout=60).json()
    assert any(event.get("kind") == "retract" for event in status["history"]) and SECRET not in json.dumps(status)
