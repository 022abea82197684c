"""Push each new snapshot of a course to its mirror (`mirror = "<git url>"`), fast-forward only.

A large university lets its git host (GitLab, Gitea, GitHub) serve the clones while f2git
only syncs. The push sends `refs/heads/main` and nothing else (never fast-import's scratch
refs under `refs/f2git/`), is never forced (a mirror that moved on its own is reported,
not overwritten), and is bounded by a timeout. The token from `mirror_token_env` travels
only in the environment of the `git push` (an `http.extraHeader` scoped to the mirror's
URL), never in argv, a URL, a repo config or the error text. A failed push returns its
error; the next sync pushes again.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlsplit, urlunsplit

from .store import git_env

if TYPE_CHECKING:
    from .config import Config, CourseConfig

PUSH_TIMEOUT = 300.0  # s for one push; a stuck host must not hold the course lock forever
REFSPEC = "refs/heads/main:refs/heads/main"  # no '+': git refuses anything but a fast-forward
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def without_userinfo(url: str) -> str:
    """The mirror URL without user information (what students and logs may see)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def auth_header(url: str, token: str) -> str:
    """HTTP Basic with the token as password: what GitLab, Gitea and GitHub accept for git.

    The user is the URL's user name when it has one (GitLab OAuth tokens want `oauth2`,
    GitHub app tokens `x-access-token`), else `f2git` (any name works with personal tokens).
    """
    user = urlsplit(url).username or "f2git"
    return "Authorization: Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _USERINFO.sub("***@", text)


def push_env(url: str, token: str) -> dict[str, str]:
    env = git_env()
    settings = [("credential.helper", "")]  # no stored credential may be used or offered
    # git sends extraHeader wherever a redirect leads (another host too): follow none.
    settings.append(("http.followRedirects", "false"))
    if token:
        settings.append((f"http.{without_userinfo(url)}.extraHeader", auth_header(url, token)))
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def push(repo_path: Path, url: str, token: str = "", timeout: float = PUSH_TIMEOUT) -> str | None:
    """Push main to `url` fast-forward only. None on success, else the reason (redacted)."""
    target = without_userinfo(url)
    secrets = [token, auth_header(url, token).partition("Basic ")[2]] if token else []
    command = ["git", "--git-dir", str(repo_path), "push", "--porcelain", "--no-verify",
               target, REFSPEC]
    try:
        process = subprocess.run(command, capture_output=True, env=push_env(url, token),
                                 timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"push to mirror {redact(target, secrets)} timed out after {timeout:g}s"
    except OSError as error:
        return f"push to mirror failed: cannot run git: {error.strerror}"
    if process.returncode == 0:
        return None
    output = (process.stdout + process.stderr).decode(errors="replace")
    if "[rejected]" in output or "non-fast-forward" in output or "fetch first" in output:
        reason = ("the mirror's main has commits f2git does not have; f2git never forces a push,"
                  " so reset the mirror's main to f2git's (or empty the mirror) to resume")
    else:
        lines = [line.strip() for line in output.splitlines()
                 if line.strip() and not line.startswith(("To ", "Done"))]
        reason = lines[-1] if lines else f"git push exited with status {process.returncode}"
    return redact(f"push to mirror {target} failed: {reason}", secrets)


def push_course(config: "Config", course: "CourseConfig", repo_path: Path,
                env: Mapping[str, str] | None = None) -> str | None:
    """After a successful sync: push the course's main to its mirror. Error text or None."""
    if not course.mirror:
        return None
    env = os.environ if env is None else env
    token = env.get(course.mirror_token_env, "") if course.mirror_token_env else ""
    return push(Path(repo_path), course.mirror, token)
