"""The platforms' public keys (their JWKS), fetched with bounded reads and cached.

A key set is read once and kept for `max_age`; a token whose `kid` is not in the cached set
makes f2git read the set again, at most once per `refetch_after` seconds per platform, so a
rotation at the platform is picked up at once and a flood of made-up kids costs the platform
one request, not one per token.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

MAX_BYTES = 256 * 1024  # a JWKS is a few KiB; anything far larger is not one
TIMEOUT = 10.0  # s for the whole answer: an endless body ends here too


class KeySetError(Exception):
    """The platform's key set could not be read or holds no usable key; says which and why."""


@dataclass
class _Cached:
    keys: dict[str, Any]  # kid -> public key
    read_at: float


def parse_key_set(body: bytes, url: str) -> dict[str, Any]:
    """kid -> RSA public key of a JWKS document; KeySetError when it is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        raise KeySetError(f"the key set at {url} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetError(f"the key set at {url} has no \"keys\" list")
    keys = {}
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") != "RSA" or not isinstance(item.get("kid"), str):
            continue  # LTI signs with RS256: other keys cannot verify a launch
        if item.get("use", "sig") != "sig" or item.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[item["kid"]] = jwt.PyJWK(item, algorithm="RS256").key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
    if not keys:
        raise KeySetError(f"the key set at {url} holds no RSA signing key with a kid")
    return keys


class PlatformKeys:
    def __init__(self, *, max_age: float = 3600.0, refetch_after: float = 10.0,
                 max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT):
        self.max_age = max_age
        self.refetch_after = refetch_after
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._cache: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Future] = {}
        self.fetches = 0  # key set reads so far (tests, bench)

    async def key(self, url: str, kid: str) -> Any:
        """The public key `kid` of the key set at `url`; KeySetError when there is none."""
        cached = self._cache.get(url)
        now = time.monotonic()
        if cached is None or now - cached.read_at > self.max_age or \
                (kid not in cached.keys and now - cached.read_at > self.refetch_after):
            cached = await self._read_shared(url)
        if kid not in cached.keys:
            raise KeySetError(f"the platform's key set at {url} has no key {kid!r}")
        return cached.keys[kid]

    async def _read_shared(self, url: str) -> _Cached:
        """One read per URL at a time: concurrent launches wait for the same answer."""
        running = self._reading.get(url)
        if running is None:
            running = asyncio.ensure_future(self._read(url))
            self._reading[url] = running
            running.add_done_callback(lambda _: self._reading.pop(url, None))
        return await asyncio.shield(running)

    async def _read(self, url: str) -> _Cached:
        body = await self.fetch(url)
        cached = _Cached(parse_key_set(body, url), time.monotonic())
        self._cache[url] = cached
        return cached

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, at most `max_bytes`, within `timeout` seconds."""
        self.fetches += 1
        client = SimpleAsyncHTTPClient(force_instance=True, max_body_size=self.max_bytes,
                                       max_buffer_size=self.max_bytes)
        try:
            response = await client.fetch(HTTPRequest(url, request_timeout=self.timeout, connect_timeout=self.timeout,
                                                      follow_redirects=False,
                                                      headers={"Accept": "application/json"}))
        except HTTPClientError as error:
            if error.code == 599:
                raise KeySetError(f"the key set at {url} did not answer within {self.timeout:g} s"
                                  f" or sent more than {self.max_bytes // 1024} KiB") from None
            raise KeySetError(f"the key set at {url} answered HTTP {error.code}") from None
        except OSError as error:
            raise KeySetError(f"the key set at {url} cannot be reached: {error.strerror or error}") from None
        finally:
            client.close()
        return response.body
