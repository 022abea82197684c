"""nbgitpuller links and git URLs for a course."""
from __future__ import annotations

from html import escape
from typing import Iterable
from urllib.parse import quote, urlencode

from .config import APPS, Config, ConfigError
from .paths import UnsafePath, safe_path


class BadLinkPath(ConfigError):
    """The `path` of a link cannot name a file in the course (a usage error: exit status 2)."""


def check_in_course(path: str | None, files: Iterable[str]) -> None:
    """Refuse a `path` that is neither a file nor a folder of the course's snapshot."""
    if not path or not path.strip("/"):
        return
    wanted = _clean(path)
    folder = wanted + "/"
    if not any(name == wanted or name.startswith(folder) for name in files):
        raise BadLinkPath(f"path {path!r} is not in the course's current snapshot")


def _clean(path: str) -> str:
    try:
        return safe_path(path.strip("/"))
    except UnsafePath as error:
        raise BadLinkPath(f"path {path!r} cannot be in a course: {error}") from None


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
                     branch: str = "main", app: str = "lab") -> str:
    """`<hub>/hub/user-redirect/git-pull?repo=…`, opening `path` (a notebook or file) in `app`."""
    target = f"{folder}/{_clean(path)}" if path and path.strip("/") else folder
    if app not in APPS:
        raise BadLinkPath(f"app {app!r} is not one of {', '.join(APPS)}")
    # urlpath is a URL path the browser is sent to, so it is percent-encoded once itself
    urlpath = APPS[app][1].format(target=quote(target, safe="/"))
    query = urlencode({"repo": repo_url, "branch": branch, "urlpath": urlpath})
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def course_link(config: Config, course: str, path: str | None = None, hub_url: str | None = None,
                app: str = "lab", branch: str = "main") -> str:
    return nbgitpuller_link(hub_url or config.hub.url, repo_url(config, course), course, path, branch=branch, app=app)


def door_base(config: Config) -> str:
    """Where students' browsers reach f2git: through the hub's service route when f2git runs as a
    hub service (its public_url may be an address only the hub's network knows)."""
    if config.server.auth == "jupyterhub":
        return f"{config.hub.url}/services/{quote(config.server.service_name, safe='')}"
    return config.server.public_url


def door_link(config: Config, course: str, path: str | None = None, app: str = "lab", branch: str = "main") -> str:
    """`<f2git>/open/<course>[/<path>]?app=…[&branch=release/NAME]`: f2git's front door, which speaks
    to the student before it hands them to the hub's nbgitpuller link."""
    if app not in APPS:
        raise BadLinkPath(f"app {app!r} is not one of {', '.join(APPS)}")
    tail = "/" + quote(_clean(path), safe="/") if path and path.strip("/") else ""
    query = {"app": app, **({"branch": branch} if branch != "main" else {})}
    return f"{door_base(config)}/open/{quote(course, safe='')}{tail}?{urlencode(query)}"


def link_in_course(config: Config, course: str, path: str | None = None, hub_url: str | None = None,
                   app: str = "lab", door: bool = False, branch: str = "main") -> str:
    """course_link (or door_link), refusing a `path` that is not in the course's current snapshot
    (`f2git link`), and a `branch` that is neither main nor a pin (`release/<name>`, f2git/release.py)."""
    from .store import CourseRepo

    if branch != "main":
        from .release import pins

        if branch.removeprefix("release/") not in pins(config, course) or not branch.startswith("release/"):
            raise BadLinkPath(f"course {course} serves no branch {branch!r}: use main, or pin one with"
                              f" `f2git pin {course} NAME` and link release/NAME")
    if path and path.strip("/"):
        _clean(path)  # an unsafe path is refused for what it is
        repo = CourseRepo.for_course(config, course)
        head = repo.head()
        if head is None:
            raise BadLinkPath(f"course {course} has no snapshot yet, so {path!r} is not in it:"
                              " run `f2git sync` first, or link the course folder")
        check_in_course(path, repo.files(head))
    return door_link(config, course, path, app, branch) if door else course_link(config, course, path, hub_url, app, branch)


# `make run` hands its serve the demo JupyterLab's token here, for the links it prints on the
# terminal; pages hand it only to a browser that opened the printed dashboard link, which
# carries it as DEMO_PARAM (f2git/server/demokey.py: the demo's dashboard has no login).
DEMO_TOKEN_ENV = "F2GIT_DEMO_TOKEN"
DEMO_PARAM = "demo"


def with_token(link: str, token: str | None) -> str:
    """A hub or JupyterLab link a fresh browser can open: with the server's token, when it has one."""
    return f"{link}&{urlencode({'token': token})}" if token else link


def with_backup(link: str) -> str:
    """The nbgitpuller link that first moves the student's folder aside to `<folder>_backup_<time>`
    (nbgitpuller 1.3's "Backup and resync"), then clones afresh."""
    return f"{link}&{urlencode({'backup': 'true'})}"


def snippets(link: str, title: str) -> dict[str, str]:
    """The link as Markdown and as HTML, ready to paste into an LMS page."""
    markdown_title = title.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return {"markdown": f"[{markdown_title}]({link.replace(')', '%29').replace(' ', '%20')})",
            "html": f'<a href="{escape(link)}" target="_blank" rel="noopener">{escape(title)}</a>'}
