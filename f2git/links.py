"""nbgitpuller links and git URLs for a course."""
from __future__ import annotations

from urllib.parse import quote, urlencode

from .config import Config, ConfigError
from .paths import UnsafePath, safe_path


class BadLinkPath(ConfigError):
    """The `path` of a link cannot name a file in the course (a usage error: exit status 2)."""


def git_url(config: Config, course: str) -> str:
    """No `.git` suffix: nbgitpuller names the student's folder after the last segment."""
    return f"{config.server.public_url}/git/{course}"


def pullhook_url(config: Config, course: str) -> str:
    """The URL pullhook's `git-remote-f2git` fetches: `f2git://` means https, else `f2git::<url>`.

    The course stays the last segment, so the student's folder is still named after it.
    """
    url = git_url(config, course)
    if url.startswith("https://"):
        return "f2git://" + url[len("https://"):]
    return "f2git::" + url


def repo_url(config: Config, course: str) -> str:
    """What links put in `repo=`: through pullhook when `[hub] pullhook = true`."""
    return pullhook_url(config, course) if config.hub.pullhook else git_url(config, course)


def nbgitpuller_link(hub_url: str, repo_url: str, folder: str, path: str | None = None,
                     branch: str = "main") -> str:
    """`<hub>/hub/user-redirect/git-pull?repo=…`, opening `path` (a notebook or file) when given."""
    if path and path.strip("/"):
        try:
            path = safe_path(path.strip("/"))
        except UnsafePath as error:
            raise BadLinkPath(f"path {path!r} cannot be in a course: {error}") from None
        target = f"{folder}/{path}"
    else:
        target = folder
    # urlpath is a URL path the browser is sent to, so it is percent-encoded once itself
    urlpath = "lab/tree/" + quote(target, safe="/")
    query = urlencode({"repo": repo_url, "branch": branch, "urlpath": urlpath})
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def course_link(config: Config, course: str, path: str | None = None, hub_url: str | None = None) -> str:
    return nbgitpuller_link(hub_url or config.hub.url, repo_url(config, course), course, path)
