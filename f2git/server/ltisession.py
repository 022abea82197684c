"""An LMS instructor's session at f2git, begun by a verified LTI launch.

The session is a signed cookie (`SameSite=None; Secure`: the LMS frames f2git) naming the
courses it may manage. While it is present, the request's identity is that instructor, who
may manage and read exactly those courses: never another one, never f2git as a whole,
whatever the server's auth policy would grant.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import tornado.web

from .auth import Auth, Identity

if TYPE_CHECKING:
    from f2git.config import CourseConfig

COOKIE = "f2git-lti-session"
LIFETIME = 8 * 3600  # s: a working day; the next launch from the LMS starts a new one


def secret_for(private_key_der: bytes) -> bytes:
    """The cookie-signing secret, derived from the tool key (so it survives restarts and rotates with it)."""
    return hmac.new(private_key_der, b"f2git lti session cookies", hashlib.sha256).digest()


def session_cookie(secret: bytes, name: str, courses: list[str], frame_origins: list[str]) -> bytes:
    value = json.dumps({"name": name, "courses": courses, "frame": frame_origins, "exp": time.time() + LIFETIME})
    return tornado.web.create_signed_value(secret, COOKIE, value)


def read_session(handler: tornado.web.RequestHandler) -> dict[str, Any] | None:
    tool = handler.settings.get("f2git_lti")
    secret = tool.secret if tool is not None else None
    raw = handler.get_cookie(COOKIE) if secret else None
    if not raw:
        return None
    value = tornado.web.decode_signed_value(secret, COOKIE, raw, max_age_days=LIFETIME / 86400)
    if value is None:
        return None
    try:
        session = json.loads(value)
    except ValueError:
        return None
    if not isinstance(session, dict) or session.get("exp", 0) < time.time():
        return None
    return session


def session_identity(handler: tornado.web.RequestHandler) -> Identity | None:
    session = read_session(handler)
    if session is None:
        return None
    return Identity(str(session.get("name", "")), kind="lti", lti_manages=frozenset(session.get("courses", [])))


def frame_ancestors(handler: tornado.web.RequestHandler) -> list[str]:
    """The LMS origins that may frame the pages of this session (none without one)."""
    session = read_session(handler)
    return [str(origin) for origin in session.get("frame", [])] if session else []


class LtiScoped(Auth):
    """The server's policy as seen by an LTI session: its courses, nothing else."""

    def __init__(self, auth: Auth):
        self.inner = auth

    async def identify(self, handler):
        return await self.inner.identify(handler)

    def may_fetch(self, identity: Identity, course: "CourseConfig") -> bool:
        return course.name in identity.lti_manages

    def may_manage(self, identity: Identity, course: "CourseConfig | None") -> bool:
        return course is not None and course.name in identity.lti_manages

    def may_read_metrics(self, identity: Identity) -> bool:
        return False

    def login_url(self, handler, next_url=None):
        return None
