"""Which f2git a student's hub token may go to: exact base URLs, never whole origins.

A hub's public origin also serves every user's own server at `/user/<name>/`, so trusting an
origin would send a victim's token to `https://<hub>/user/mallory/…` whenever a link names
it. A base URL is trusted only when scheme, host, port and path prefix all equal one the
image lists:

- every URL in $F2GIT_PULLHOOK_TRUSTED (spaces or commas between them), e.g.
  `https://hub.example.edu/services/f2git` or `http://f2git:8765`; `f2git hub-config`
  sets it to f2git's `public_url`;
- for an entry without a path (what earlier versions wrote: an origin) and for the hub's own
  URLs the single-user server knows ($JUPYTERHUB_API_URL, $JUPYTERHUB_PUBLIC_HUB_URL, …):
  f2git at that origin's root (entries only) and the hub service `<base_url>services/f2git`
  there. Paths under `/services/` are the hub admin's; users' servers live under `/user/`.
"""
from __future__ import annotations

import re
from typing import Mapping, NamedTuple
from urllib.parse import urlsplit

TRUSTED_VARIABLE = "F2GIT_PULLHOOK_TRUSTED"
# What a single-user server knows of its hub: the API (often an in-cluster address) and,
# where the hub sets them, its public URLs.
HUB_URL_VARIABLES = ("JUPYTERHUB_API_URL", "JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_HOST")
DEFAULT_SERVICE = "f2git"  # the service name `f2git hub-config` registers unless configured otherwise


class Base(NamedTuple):
    """A base URL as compared: scheme, lower-case host, port (default filled in), path without a
    trailing slash ("" at the root). Paths are compared as written: no dot segments resolved,
    no percent-decoding, so `/services/f2git/../../user/x` is simply another path."""

    scheme: str
    host: str
    port: int | None
    path: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def base_of(url: str) -> Base | None:
    """The Base of an http(s) URL, or None when it is not one (or has a query or fragment)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or "@" in parts.netloc:  # a user name in the URL is never f2git's own address
        return None
    return Base(parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))


def hub_base_url(env: Mapping[str, str]) -> str:
    """The hub's base_url path ("/" unless the hub serves under a prefix), with both slashes."""
    path = env.get("JUPYTERHUB_BASE_URL", "/") or "/"
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


def trusted_bases(env: Mapping[str, str]) -> set[Base]:
    """The f2git base URLs this image may send a student's hub token to."""
    service = hub_base_url(env) + f"services/{DEFAULT_SERVICE}"
    trusted: set[Base] = set()
    for entry in re.split(r"[\s,]+", env.get(TRUSTED_VARIABLE, "")):
        base = base_of(entry)
        if base is None:
            continue
        trusted.add(base)
        if not base.path:  # an origin, as earlier versions listed: its hub service too
            trusted.add(base._replace(path=service.rstrip("/")))
    for variable in HUB_URL_VARIABLES:
        base = base_of(env.get(variable, ""))
        if base is not None:
            trusted.add(base._replace(path=service.rstrip("/")))
    return trusted


def untrusted(base_url: str, env: Mapping[str, str]) -> str | None:
    """Why the token must not go to f2git at `base_url`, or None when it may."""
    base = base_of(base_url)
    if base is not None and base in trusted_bases(env):
        return None
    return (f"this link points to f2git at {base_url}, which this JupyterHub does not trust with your"
            " login, so nothing was sent there. Use the course link your instructor gave you; if this is"
            f" it, tell them (a hub admin can trust that exact address in {TRUSTED_VARIABLE})")
