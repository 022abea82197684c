"""Helpers for roster tests: the jupyterhub policy with identities taken from the request, and git
clicks as a named hub user.

`StubHubAuth` is `HubAuth` (its may_fetch / may_manage / refusal decide, from the real roster
store) except that who asks comes from `Authorization: token user:<name>` instead of the hub;
`admins` and `groups` say what the hub would.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from f2git.roster import RosterStore
from f2git.server.auth import HubAuth, Identity, request_token


class StubHubAuth(HubAuth):
    def __init__(self, data_dir: Path, *, admins: set[str] = frozenset(), groups: dict[str, set[str]] | None = None,
                 instructors_group: str = ""):
        super().__init__("f2git", "http://127.0.0.1:9/hub/api", "unused-service-token",
                         instructors_group=instructors_group, rosters=RosterStore(data_dir))
        self.admins = set(admins)
        self.groups = groups or {}

    async def identify(self, handler):
        token = request_token(handler)
        if not token.startswith("user:"):
            return None
        name = token[len("user:"):]
        return Identity(name, kind="user", admin=name in self.admins,
                        groups=frozenset(group for group, users in self.groups.items() if name in users))


def as_user(name: str) -> dict[str, str]:
    return {"Authorization": f"token user:{name}"}


def git_clone(url: str, user: str, dest: Path) -> subprocess.CompletedProcess:
    """`git clone --depth 1` as nbgitpuller runs it, with the user's token as git's extra header."""
    return subprocess.run(["git", "-c", f"http.extraHeader=Authorization: token user:{user}", "clone", "--depth", "1",
                           url, str(dest)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                               "GIT_TERMINAL_PROMPT": "0", "HOME": str(dest.parent)})
