"""What one client may hold of the server at once, named by who it is (connections.py
enforces it): identities, and the bytes of unfinished request bodies.

- An identity is a hub user or service by name (all their tokens together), or a static token
  by a salted digest: tokens are never kept or logged.
- `BodyBudget`: `limit` bytes of unfinished bodies in total, a sixteenth (SHARES) per holder.
  Over its share a holder's newest request is refused; when the total is full the biggest
  holder's oldest request makes room, or, if the newcomer would be the biggest, it is refused.
"""
from __future__ import annotations

import collections
import hashlib
import secrets
from typing import Protocol

SHARES = 16  # one holder may hold this fraction of max_request_bodies
# Digests name credentials in memory and logs; salted per process, so a log line says nothing
# about a token beyond "the same one as before".
_SALT = secrets.token_bytes(16)


def digest(credential: str) -> str:
    return hashlib.sha256(_SALT + credential.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def holder_of(kind: str, name: str, credential: str) -> str | None:
    """The budget an authenticated identity draws on: a hub user or service by name (all their
    tokens together), a static token by its digest; None for anonymous requests, which stay
    on their address's."""
    if kind in ("user", "service"):
        return f"hub {kind} {name}"
    if kind == "token" and credential:
        return f"token #{digest(credential)}"
    return None


class Request(Protocol):
    """What BodyBudget needs of a request: who pays for its body, and how to refuse it."""

    payer: str

    def refuse(self, message: str) -> None: ...


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MiB"


class BodyBudget:
    """Bytes of unfinished request bodies, in total and per holder (see the module's doc)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.share = max(limit // SHARES, 1)
        self.total = 0
        self.sums: collections.Counter[str] = collections.Counter()
        self.held: dict[str, dict[Request, int]] = {}  # holder → its requests' bytes, oldest first

    def charge(self, request: Request, size: int) -> str | None:
        """Count `size` more bytes of `request`'s body; None when they fit (perhaps after
        evicting the biggest holder's oldest request), else why `request` is refused."""
        holder = request.payer
        mine = self.sums[holder] + size
        if mine > self.share:
            return (f"f2git holds at most {_mib(self.share)} of unfinished request bodies per client"
                    f" ({holder}); finish or close your other requests first")
        while self.total + size > self.limit:
            biggest = max(self.sums, key=self.sums.__getitem__)
            if self.sums[biggest] <= mine:  # the newcomer would be the biggest: it pays
                return (f"f2git is holding {_mib(self.limit)} of unfinished request bodies, yours among"
                        " the largest; try again in a moment")
            victim = next(iter(self.held[biggest]))
            victim.refuse(f"f2git is holding {_mib(self.limit)} of unfinished request bodies and"
                          f" {biggest} holds the most: this one was dropped; try again in a moment")
            if victim in self.held.get(biggest, {}):  # refuse() releases; never loop on a stale entry
                self.release(victim)
        self.held.setdefault(holder, {})
        self.held[holder][request] = self.held[holder].get(request, 0) + size
        self.sums[holder] += size
        self.total += size
        return None

    def release(self, request: Request) -> None:
        requests = self.held.get(request.payer)
        size = requests.pop(request, 0) if requests is not None else 0
        if not size:
            return
        self.total -= size
        self.sums[request.payer] -= size
        if not requests:
            del self.held[request.payer]
            del self.sums[request.payer]

    def move(self, request: Request, holder: str) -> None:
        """`request` is paid for by `holder` from now on, with what it holds already."""
        size = self.held.get(request.payer, {}).get(request, 0)
        self.release(request)
        request.payer = holder
        if size:
            self.held.setdefault(holder, {})[request] = size
            self.sums[holder] += size
            self.total += size
