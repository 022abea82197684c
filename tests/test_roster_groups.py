"""hub_group: the hub group follows the roster through the hub API, users the hub does not know
yet are left out (and the rest still added), and only a read roster is mirrored."""
from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from f2git.hubgroups import HubGroups
from tests.httpserver import send_json


class FakeGroupsApi:
    """The hub's group endpoints as JupyterHub answers them (apihandlers/groups.py): a POST or
    DELETE naming a user the hub does not know is refused whole with 400 "No such user"."""

    def __init__(self, users: set[str], group: set[str]):
        self.users, self.group, self.calls = users, group, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, data):
                send_json(self, status, data)

            def _change(self):
                names = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["users"]
                owner.calls.append((self.command, sorted(names)))
                unknown = [name for name in names if name not in owner.users]
                if unknown:
                    return self._answer(400, {"message": f"No such user: {unknown[0]}"})
                (owner.group.update if self.command == "POST" else owner.group.difference_update)(names)
                self._answer(200, {"name": "g", "users": sorted(owner.group)})

            def do_GET(self):
                assert self.headers["Authorization"] == "token svc"
                self._answer(200, {"name": "nbgrader-cs101", "users": sorted(owner.group)})

            do_POST = do_DELETE = _change

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    api = FakeGroupsApi(users={"ana", "tina", "old"}, group={"old", "tina"})
    yield api
    api.close()


def test_the_group_becomes_the_roster_and_unknown_users_wait_for_their_hub_account(hub):
    added, removed = asyncio.run(HubGroups(hub.url, "svc").sync("nbgrader-cs101", {"ana", "tina", "newbie"}))
    assert hub.group == {"ana", "tina"} and (added, removed) == (1, 1)
    assert ("POST", ["ana", "newbie"]) in hub.calls and ("POST", ["ana"]) in hub.calls
    hub.calls.clear()
    assert asyncio.run(HubGroups(hub.url, "svc").sync("nbgrader-cs101", {"ana", "tina"})) == (0, 0)
    assert hub.calls == []  # nothing changed: one GET, no writes


def test_only_a_roster_that_was_read_reaches_the_group(tmp_path):
    from connectors.base import SourceError
    from connectors.roster import ACTIVE, LEARNER, Enrolment
    from f2git.config import parse
    from f2git.roster import RosterKeeper

    config = parse({"server": {"data_dir": str(tmp_path)}, "courses": {"cs101": {
        "source": "canvas", "url": "https://c.example.edu", "course_id": 1, "token_env": "T", "members": "lms",
        "hub_group": "nbgrader-{course}"}}}, tmp_path / "f.toml", {"T": "x"})
    course = config.courses["cs101"]
    answers = [SourceError("Canvas: answered 500"), [Enrolment("1", "ana", LEARNER, ACTIVE)]]

    def reader(config, course):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    told = []

    async def run():
        keeper = RosterKeeper(config, reader=reader)
        keeper.on_read(lambda course, roster: told.append([e.hub_user for e in roster.enrolments]))
        await keeper.start(course)  # fails: the group is left alone
        await asyncio.sleep(0)
        assert told == []
        await keeper.start(course)
        await asyncio.sleep(0)
        await keeper.close()

    asyncio.run(run())
    assert told == [["ana"]]
