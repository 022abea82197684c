"""`git-remote-f2git <remote> <url>`: ask f2git where to fetch, then exec git's HTTP transport.

f2git answers after refreshing a mirrored course (bounded by its refresh_wait), so the
mirror has the newest snapshot; a course f2git serves itself refreshes on the fetch's
own `info/refs` request.

git runs this for URLs `f2git://host[:port]/prefix/git/<course>` (fetched over https) and
`f2git::<http or https URL>/git/<course>` (any scheme: loopback, in-cluster http). The
course name is the URL's last segment, so nbgitpuller names the student's folder after it.

The student's hub token ($JUPYTERHUB_API_TOKEN) is sent only to the f2git origin, as an
`Authorization` header set through GIT_CONFIG_COUNT/KEY/VALUE in the environment of the
exec'd transport: never in a URL, `.git/config`, argv or output.
"""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

GIT_URL = re.compile(r"^(?P<base>https?://[^/?#]+(?:/[^?#]*?)?)/git/(?P<course>[a-z0-9][a-z0-9._-]*?)(?:\.git)?/?$")
TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
DEFAULT_TIMEOUT = 60.0  # s; the server bounds its own wait by refresh_wait


class HelperError(Exception):
    """Shown to the student by git (and nbgitpuller): one line, never a secret."""


@dataclass(frozen=True)
class Target:
    base: str    # f2git's base URL, e.g. http://127.0.0.1:8765 or https://hub.example.edu/services/f2git
    course: str
    git_url: str  # f2git's own git URL of the course


def parse_address(address: str) -> Target:
    """The f2git base URL and course of a helper address (`f2git://…` or the part after `f2git::`)."""
    url = "https://" + address[len("f2git://"):] if address.startswith("f2git://") else address
    match = GIT_URL.match(url)
    if not match:
        raise HelperError(f"not an f2git course URL: {address!r} (expected f2git://HOST/git/COURSE"
                          " or f2git::https://HOST/git/COURSE)")
    base, course = match["base"], match["course"]
    return Target(base=base, course=course, git_url=f"{base}/git/{course}")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def ask_remote(target: Target, token: str, timeout: float) -> dict:
    """Ask f2git where to fetch the course from (it refreshes a mirrored course first, bounded)."""
    request = urllib.request.Request(f"{target.base}/api/courses/{target.course}/remote",
                                     headers={"Accept": "application/json"})
    if token:
        request.add_unredirected_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        reason = {401: "the hub token was not accepted (is pullhook's service access granted?)",
                  403: "you are not allowed to fetch this course",
                  404: "no such course"}.get(error.code, error.reason)
        raise HelperError(f"f2git at {target.base} refused course {target.course!r}: HTTP {error.code}, {reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HelperError(f"cannot reach f2git at {target.base}: {reason}") from None
    except ValueError:
        raise HelperError(f"f2git at {target.base} did not answer with JSON") from None


def transport_env(env: Mapping[str, str], fetch_url: str, target: Target, token: str) -> dict[str, str]:
    """`env` plus the token as an extra header, scoped to f2git's URL, appended to GIT_CONFIG_*."""
    result = dict(env)
    if not token or origin(fetch_url) != origin(target.base):
        return result  # a mirror host never sees the hub token
    try:
        count = int(result.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    result[f"GIT_CONFIG_KEY_{count}"] = f"http.{target.base}/.extraHeader"
    result[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: token {token}"
    result["GIT_CONFIG_COUNT"] = str(count + 1)
    return result


def prepare(remote: str, address: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The transport command and its environment for one helper invocation."""
    target = parse_address(address)
    token = env.get(TOKEN_VARIABLE, "")
    try:
        timeout = float(env.get("F2GIT_PULLHOOK_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        raise HelperError("F2GIT_PULLHOOK_TIMEOUT must be a number of seconds") from None
    answer = ask_remote(target, token, timeout)
    fetch_url = answer.get("mirror") or target.git_url
    scheme = urlsplit(fetch_url).scheme
    if scheme not in ("http", "https"):
        raise HelperError(f"f2git named a mirror with an unsupported scheme: {scheme!r}")
    return ["git", f"remote-{scheme}", remote, fetch_url], transport_env(env, fetch_url, target, token)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    if len(argv) != 3:
        sys.exit("usage: git-remote-f2git REMOTE URL (run by git for f2git:// URLs)")
    try:
        command, env = prepare(argv[1], argv[2], os.environ)
    except HelperError as error:
        sys.exit(f"f2git: {error}")
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
