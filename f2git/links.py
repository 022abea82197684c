"""nbgitpuller links and git URLs for a course."""
from __future__ import annotations

from urllib.parse import quote, urlencode

from .config import Config


def git_url(config: Config, course: str) -> str:
    """No `.git` suffix: nbgitpuller names the student's folder after the last segment."""
    return f"{config.server.public_url}/git/{course}"


def nbgitpuller_link(hub_url: str, repo_url: str, folder: str, path: str | None = None,
                     branch: str = "main") -> str:
    """`<hub>/hub/user-redirect/git-pull?repo=…`, opening `path` (a notebook or file) when given."""
    target = f"{folder}/{path.strip('/')}" if path else folder
    urlpath = "lab/tree/" + quote(target, safe="/")
    query = urlencode({"repo": repo_url, "branch": branch, "urlpath": urlpath})
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def course_link(config: Config, course: str, path: str | None = None, hub_url: str | None = None) -> str:
    return nbgitpuller_link(hub_url or config.hub.url, git_url(config, course), course, path)
