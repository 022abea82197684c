"""OIDC third-party initiated login: `state` and `nonce`, and the browser they are bound to.

The login answers the platform's request with a redirect to its authorization endpoint and a
cookie that only this browser holds; the launch that comes back must carry the same `state`
and that cookie, within `TTL`, once. The nonce travels inside the signed id_token and must be
the one this login made.

The state carries the login itself (platform, nonce, a hash of the browser's binding, expiry),
signed with a key derived from the tool key (PyJWT, HS256): a login costs f2git no memory, so a
flood of logins cannot crowd out real ones, and a restart loses no launch in flight. Only used
states are remembered, until they expire, so that a launch cannot be replayed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from . import Refused

TTL = 600.0  # s between the login and the launch (the person may have to sign in to the LMS)
# used states remembered against replay: each took a login and a launch with its cookie; beyond
# this the oldest is forgotten (replaying it would still need the browser's cookie and id_token)
MAX_USED = 200_000
COOKIE_PREFIX = "f2git-lti-"
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Pending:
    platform: str  # [[lti.platforms]] name
    nonce: str
    binding_hash: bytes
    expires: float  # epoch seconds
    storage_target: str = ""  # the platform's postMessage storage frame, when it offered one
    id: str = ""


LoginRefused = Refused


def cookie_name(state: str) -> str:
    """One cookie per login, so two tabs launching at once do not overwrite each other."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


class Logins:
    def __init__(self, secret: bytes, ttl: float = TTL, max_used: int = MAX_USED):
        self._key = hmac.new(secret, b"f2git lti login state", hashlib.sha256).digest()
        self.ttl = ttl
        self.max_used = max_used
        self._used: OrderedDict[str, float] = OrderedDict()  # state id -> expiry, oldest first
        self._lock = threading.Lock()

    def begin(self, platform: str, storage_target: str = "") -> tuple[str, str, str]:
        """A new login: (state, nonce, binding); the binding goes into the browser's cookie."""
        nonce, binding = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        claims = {"p": platform, "n": nonce, "b": _b64(_hash(binding)), "exp": int(time.time() + self.ttl),
                  "jti": secrets.token_urlsafe(12)}
        if storage_target:
            claims["s"] = storage_target
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), nonce, binding

    def peek(self, state: str) -> Pending | None:
        """The login `state` belongs to, when f2git issued it and it has not expired (nothing is
        granted on it)."""
        if not state:
            return None
        try:
            claims = jwt.decode(state, self._key, algorithms=[ALGORITHM], options={"require": ["exp", "jti"]})
            return Pending(str(claims["p"]), str(claims["n"]), base64.urlsafe_b64decode(claims["b"] + "=="),
                           float(claims["exp"]), str(claims.get("s", "")), str(claims["jti"]))
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            return None

    def finish(self, state: str, binding: str | None) -> Pending:
        """The login `state` belongs to, used up; LoginRefused when there is none, it was used,
        or the browser is not the one that started it."""
        pending = self.peek(state)
        if pending is None:
            raise LoginRefused(403, "lti.stale", todo="lti.relaunch.todo")
        now = time.time()
        with self._lock:  # any try uses it up: a stolen form gets one, which the owner's post cannot repeat
            while self._used and (len(self._used) >= self.max_used or next(iter(self._used.values())) < now):
                self._used.popitem(last=False)  # first used first: expired ones behind a live head wait for it
            if pending.id in self._used:
                raise LoginRefused(403, "lti.stale", todo="lti.relaunch.todo")
            self._used[pending.id] = pending.expires
        if not binding or not hmac.compare_digest(_hash(binding), pending.binding_hash):
            raise LoginRefused(403, "lti.unbound")
        return pending

    def used(self) -> int:
        """How many used states are remembered now."""
        with self._lock:
            return len(self._used)


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
