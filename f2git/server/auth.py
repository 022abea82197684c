"""Who is asking, and what they may do. `[server] auth` picks the policy.

The server's handlers call `identify` once per request, then `may_fetch` for git and
course reads, `may_manage` for refreshes and the dashboard.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tornado.web

    from f2git.config import Config, CourseConfig


@dataclass(frozen=True)
class Identity:
    name: str
    kind: str = "anonymous"  # anonymous | token | user | service
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False


ANONYMOUS = Identity("anonymous")


class Auth:
    """Base policy. `identify` returns None when credentials are missing or invalid (→ 401)."""

    async def identify(self, handler: "tornado.web.RequestHandler") -> Identity | None:
        raise NotImplementedError

    def may_fetch(self, identity: Identity, course: "CourseConfig") -> bool:
        return True

    def may_manage(self, identity: Identity, course: "CourseConfig | None") -> bool:
        return True


class NoAuth(Auth):
    """`auth = "none"`: everyone may do everything (allowed on loopback only)."""

    async def identify(self, handler):
        return ANONYMOUS


def make_auth(config: "Config") -> Auth:
    if config.server.auth == "none":
        return NoAuth()
    raise NotImplementedError(f"auth mode {config.server.auth!r} is not implemented yet")
