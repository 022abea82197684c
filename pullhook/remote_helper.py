"""`git-remote-f2git <remote> <url>`: ask f2git where to fetch, then exec git's HTTP transport.

f2git answers after refreshing a mirrored course (bounded by its refresh_wait), so the
mirror has the newest snapshot; a course f2git serves itself refreshes on the fetch's
own `info/refs` request.

git runs this for URLs `f2git://host[:port]/prefix/git/<course>` (fetched over https) and
`f2git::<http or https URL>/git/<course>` (any scheme: loopback, in-cluster http). The
course name is the URL's last segment, so nbgitpuller names the student's folder after it.

A link is a URL anyone can write, so the student's hub token ($JUPYTERHUB_API_TOKEN) is
sent only to an f2git base URL the image trusts exactly (scheme, host, port and path prefix;
`pullhook/trust.py`): the hub's own origins also serve every user's server under `/user/`.
For any other address nothing is sent and the student reads why. It travels as an
`Authorization` header set through GIT_CONFIG_COUNT/KEY/VALUE in the environment of the
exec'd transport, scoped to f2git's git URL: never in a URL, `.git/config`, argv or output,
and never to a mirror.

When f2git refuses (not logged in, not in the course, no such course, unreachable), the
reason must reach the student's nbgitpuller page. nbgitpuller discards the stderr of its
`git ls-remote` and streams that of `git clone`/`git fetch`; so this helper then answers
git itself: its `list` names `main` at a placeholder id (ls-remote succeeds), and its
`fetch` prints the reason and fails. f2git's `notice` (the source is failing, how old the
snapshot is) is printed before a fetch that goes ahead.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from . import trust

PLACEHOLDER = "0" * 39 + "1"  # names no object: a fetch of it could only fail
GIT_URL = re.compile(r"^(?P<base>https?://[^/?#]+(?:/[^?#]*?)?)/git/(?P<course>[a-z0-9][a-z0-9._-]*?)(?:\.git)?/?$")
TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
BRIDGE_HEADER = "X-F2git-Bridge"  # f2git's server/rewritenotice.py: this client bridges rewritten histories
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


def untrusted(target: Target, env: Mapping[str, str]) -> str | None:
    """Why the token must not go to `target`, or None when it may (see pullhook/trust.py)."""
    return trust.untrusted(target.base, env)


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
        raise HelperError(refusal(target, error.code, server_says(error))) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HelperError(f"cannot reach f2git at {target.base}: {reason}") from None
    except ValueError:
        raise HelperError(f"f2git at {target.base} did not answer with JSON") from None


def server_says(error: urllib.error.HTTPError) -> str:
    """The `error` text of f2git's JSON answer, if any (one line)."""
    try:
        text = str(json.loads(error.read(4096) or b"{}").get("error") or "")
    except (ValueError, OSError, AttributeError):
        return ""
    return " ".join(text.split())[:300]


def refusal(target: Target, code: int, detail: str) -> str:
    """What a student reads when f2git refuses their click: what happened and what to do."""
    course = target.course
    if code == 403 and detail:  # f2git's own words, about this student (not enrolled, invitation, …)
        return f"{detail} [f2git at {target.base}: HTTP 403]"
    reason = {
        401: f"you are not logged in to f2git for course {course!r}: your hub login was not accepted."
             " Log out of JupyterHub, log in again and click the link again. If that does not help,"
             " tell your instructor (the hub admin must grant pullhook's access to f2git)",
        403: f"you are not in course {course!r}: f2git only gives its files to the course's members."
             " If you should be, ask your instructor to add you",
        404: f"there is no course {course!r} here: the link is wrong or the course was renamed."
             " Ask your instructor for the current link",
    }.get(code, f"f2git could not answer for course {course!r} (HTTP {code}); try again in a minute")
    return f"{reason} [f2git at {target.base}: HTTP {code}{': ' + detail if detail else ''}]"


def refuse(reason: str, stdin=None, stdout=None, stderr=None) -> int:
    """Speak git's remote-helper protocol for a refused course: ls-remote sees `main` (so
    nbgitpuller goes on to clone or fetch), a fetch prints `reason` and fails."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    for line in stdin:
        command = line.strip()
        if command == "capabilities":
            stdout.write("fetch\n\n")
        elif command.startswith("list"):
            stdout.write(f"@refs/heads/main HEAD\n{PLACEHOLDER} refs/heads/main\n\n")
        elif command.startswith("fetch"):
            stderr.write(f"f2git: {reason}\n")
            stderr.flush()
            return 1
        elif not command:
            return 0
        else:
            stdout.write("\n")  # an option or command this helper does not support
        stdout.flush()
    return 0


def transport_env(env: Mapping[str, str], fetch_url: str, target: Target, token: str) -> dict[str, str]:
    """`env` plus the token as an extra header, scoped to f2git's URL, appended to GIT_CONFIG_*."""
    if not token or fetch_url != target.git_url:
        return dict(env)  # a mirror never sees the hub token, even one on f2git's host
    return with_config(env, f"http.{target.git_url}.extraHeader", f"Authorization: token {token}")


def with_config(env: Mapping[str, str], key: str, value: str) -> dict[str, str]:
    """`env` plus one git setting, appended to GIT_CONFIG_COUNT/KEY/VALUE."""
    result = dict(env)
    try:
        count = int(result.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    result[f"GIT_CONFIG_KEY_{count}"] = key
    result[f"GIT_CONFIG_VALUE_{count}"] = value
    result["GIT_CONFIG_COUNT"] = str(count + 1)
    return result


def prepare(remote: str, address: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The transport command and its environment for one helper invocation."""
    command, transport, _ = plan(remote, address, env)
    return command, transport


def plan(remote: str, address: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str], Bridge | None]:
    """prepare()'s command and environment, and the history bridge to build after the transport
    ends (when f2git rewrote the course's history and git runs in a repository), else None."""
    target = parse_address(address)
    token = env.get(TOKEN_VARIABLE, "")
    if token and (reason := untrusted(target, env)):
        raise HelperError(reason)
    try:
        timeout = float(env.get("F2GIT_PULLHOOK_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        raise HelperError("F2GIT_PULLHOOK_TIMEOUT must be a number of seconds") from None
    answer = ask_remote(target, token, timeout)
    if answer.get("notice"):
        print(f"f2git: {answer['notice']}", file=sys.stderr, flush=True)  # shown by clone/fetch
    fetch_url = answer.get("mirror") or target.git_url
    scheme = urlsplit(fetch_url).scheme
    if scheme not in ("http", "https"):
        raise HelperError(f"f2git named a mirror with an unsupported scheme: {scheme!r}")
    bridge = Bridge(target, token, timeout, env["GIT_DIR"]) if answer.get("rewrites") and env.get("GIT_DIR") else None
    transport = transport_env(env, fetch_url, target, token)
    if bridge is not None:  # f2git need not tell the student to backup and resync: this helper bridges
        # the same URL as the token's header: git takes http.<url>.* only from the most specific URL
        transport = with_config(transport, f"http.{target.git_url}.extraHeader", f"{BRIDGE_HEADER}: 1")
    return ["git", f"remote-{scheme}", remote, fetch_url], transport, bridge


@dataclass(frozen=True)
class Bridge:
    """What pullhook/bridge.py needs once the fetch has brought the rewritten history."""

    target: Target
    token: str
    timeout: float
    git_dir: str

    def run(self) -> None:
        from pullhook import bridge

        try:
            mapping = bridge.fetch_rewrites(self.target.base, self.target.course, self.token, self.timeout)
            if bridge.bridge(self.git_dir, mapping):
                print(f"f2git: {self.target.course}: your instructor took back files released by mistake;"
                      " your copy was linked to the corrected history (your edits are kept)",
                      file=sys.stderr, flush=True)
        except (OSError, ValueError, RuntimeError) as error:  # the merge then says what is wrong
            print(f"f2git: could not link your copy to the corrected history: {error}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    if len(argv) != 3:
        sys.exit("usage: git-remote-f2git REMOTE URL (run by git for f2git:// URLs)")
    try:
        command, env, bridge = plan(argv[1], argv[2], os.environ)
    except HelperError as error:
        sys.exit(refuse(str(error)))
    if bridge is None:
        os.execvpe(command[0], command, env)
    # git waits for this helper to exit before its fetch returns: the bridge is in place
    # before nbgitpuller merges
    code = subprocess.call(command, env=env)
    if code == 0:
        bridge.run()
    sys.exit(code)


if __name__ == "__main__":
    main()
