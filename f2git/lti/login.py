"""OIDC third-party initiated login: `state` and `nonce`, and the browser they are bound to.

The login answers the platform's request with a redirect to its authorization endpoint and a
cookie that only this browser holds; the launch that comes back must carry the same `state`
and that cookie, within `TTL`, once. The nonce travels inside the signed id_token and must be
the one this login made. All in memory: a restart costs an in-flight launch one more click.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from . import Refused

TTL = 600.0  # s between the login and the launch (the person may have to sign in to the LMS)
MAX_PENDING = 100_000  # logins waiting for their launch: a flood of logins cannot fill memory
COOKIE_PREFIX = "f2git-lti-"


@dataclass(frozen=True)
class Pending:
    platform: str  # [[lti.platforms]] name
    nonce: str
    binding_hash: bytes
    expires: float
    storage_target: str = ""  # the platform's postMessage storage frame, when it offered one


LoginRefused = Refused


def cookie_name(state: str) -> str:
    """One cookie per login, so two tabs launching at once do not overwrite each other."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


class Logins:
    def __init__(self, ttl: float = TTL, max_pending: int = MAX_PENDING):
        self.ttl = ttl
        self.max_pending = max_pending
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()

    def begin(self, platform: str, storage_target: str = "") -> tuple[str, str, str]:
        """A new login: (state, nonce, binding); the binding goes into the browser's cookie."""
        state, nonce, binding = (secrets.token_urlsafe(32) for _ in range(3))
        now = time.monotonic()
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._prune(now)
            if len(self._pending) >= self.max_pending:
                raise LoginRefused(503, "lti.logins_busy")
            self._pending[state] = Pending(platform, nonce, _hash(binding), now + self.ttl, storage_target)
        return state, nonce, binding

    def peek(self, state: str) -> Pending | None:
        """The login `state` belongs to, left in place (nothing is granted on it)."""
        with self._lock:
            pending = self._pending.get(state) if state else None
        return pending if pending is not None and pending.expires >= time.monotonic() else None

    def finish(self, state: str, binding: str | None) -> Pending:
        """The login `state` belongs to, used up; LoginRefused when there is none or the
        browser is not the one that started it."""
        with self._lock:
            pending = self._pending.pop(state, None) if state else None
        if pending is None or pending.expires < time.monotonic():
            raise LoginRefused(403, "lti.stale", todo="lti.relaunch.todo")
        if not binding or not hmac.compare_digest(_hash(binding), pending.binding_hash):
            raise LoginRefused(403, "lti.unbound")
        return pending

    def _prune(self, now: float) -> None:
        for state in [s for s, p in self._pending.items() if p.expires < now]:
            del self._pending[state]


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
