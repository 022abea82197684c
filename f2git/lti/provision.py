"""A course connects itself: an instructor's launch from an LMS course that no f2git course claims.

`provision = "ask"` files a `Request` that an f2git manager approves; `"auto"` creates the course
at once. A created course is one TOML file in the course store, `lti-courses/` beside the config
file (the admin can read and edit it; `f2git.config.parse` reads it with the config). Its source
comes from the platform's `provision_*` keys the admin configured (the credentials never come
from the launch): Canvas with the launch's `canvas_course_id`, Moodle with its course id (Moodle's
context id), else a local upload folder `<data_dir>/uploads/<course>`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f2git.config import COURSE_STORE, check_lti_contexts, parse_course

from .files import write_private

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig, PlatformConfig

    from .launch import Launch



class ProvisionError(Exception):
    """The course could not be created; says why (for the manager or the instructor)."""


@dataclass
class Request:
    platform: str
    context_id: str
    context_title: str
    instructor: str
    course: str  # the name the course will get
    table: dict[str, Any] = field(default_factory=dict)  # its [courses.<name>] keys
    requested_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.platform}/{self.context_id}"

    def source_words(self) -> str:
        if self.table.get("source") == "local":
            return f"a local upload folder ({self.table['path']})"
        return f"{self.table.get('source')} course {self.table.get('course_id')} at {self.table.get('url')}"


def store_dir(config_path: Path) -> Path:
    return Path(config_path).resolve().parent / COURSE_STORE


def course_name(title: str, context_id: str, taken: set[str]) -> str:
    """A readable, unused course name from the LMS course's title."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    if not base:
        base = "lti-" + hashlib.sha256(context_id.encode()).hexdigest()[:8]
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def infer_table(config: "Config", platform: "PlatformConfig", launch: "Launch", name: str) -> dict[str, Any]:
    """The new course's keys: its source from the platform's provision_* keys and the launch's course id."""
    context = config.lti.context_key(platform, launch.context_id)
    source = platform.provision_source
    if source == "canvas" and launch.custom.get("canvas_course_id", "").isdigit():
        table = {"source": "canvas", "url": platform.provision_url, "course_id": int(launch.custom["canvas_course_id"])}
    elif source == "moodle" and launch.context_id.isdigit():  # Moodle's context id is its course id
        table = {"source": "moodle", "url": platform.provision_url, "course_id": int(launch.context_id)}
    else:
        table = {"source": "local", "path": str(config.server.data_dir / "uploads" / name)}
    if table["source"] != "local" and platform.provision_token_env:
        table["token_env"] = platform.provision_token_env
    return {**table, "lti_contexts": [context]}


def request_for(config: "Config", launch: "Launch", instructor: str) -> Request:
    name = course_name(launch.context_title, launch.context_id, set(config.courses) | set(config.broken))
    return Request(launch.platform.name, launch.context_id, launch.context_title, instructor, name,
                   infer_table(config, launch.platform, launch, name), time.time())


def create(config: "Config", request: Request, env: dict[str, str] | None = None) -> "CourseConfig":
    """Write the course's file into the store and serve it from now on (added to `config.courses`)."""
    if request.course in config.courses:
        raise ProvisionError(f"a course named {request.course!r} exists already")
    base_dir = Path(config.path).resolve().parent
    course, errors = parse_course(request.course, request.table, base_dir, os.environ if env is None else env)
    if course is not None:
        errors += check_lti_contexts(course, config.lti)
    if errors:
        raise ProvisionError(f"course {request.course!r} cannot be created: " + "; ".join(errors))
    if request.table["source"] == "local":
        Path(request.table["path"]).mkdir(parents=True, exist_ok=True)
    folder = store_dir(config.path)
    folder.mkdir(parents=True, exist_ok=True)
    # the comment quotes the LMS's words as JSON strings: a title cannot end the comment and add TOML
    said = f"{request.platform} context {json.dumps(request.context_id)} ({json.dumps(request.context_title)})"
    lines = [f"# created by f2git for {said}, requested by {json.dumps(request.instructor)}",
             f"[courses.{request.course}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in request.table.items()]  # JSON scalars/lists are TOML
    write_private(folder / f"{request.course}.toml", "\n".join(lines) + "\n")
    course.normalise()
    config.courses[request.course] = course
    return course


class Requests:
    """Pending requests, `<data_dir>/lti/requests.json` (0600), one per LMS context."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: "Config") -> "Requests":
        return cls(config.server.data_dir / "lti" / "requests.json")

    def all(self) -> list[Request]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [Request(**item) for item in data if isinstance(item, dict)]

    def add(self, request: Request) -> Request:
        """File `request`; one already pending for the same context stays as it was."""
        with self._lock:
            pending = self.all()
            for old in pending:
                if old.key == request.key:
                    return old
            self._save(pending + [request])
            return request

    def take(self, key: str) -> Request | None:
        with self._lock:
            pending = self.all()
            found = next((r for r in pending if r.key == key), None)
            if found is not None:
                self._save([r for r in pending if r.key != key])
            return found

    def _save(self, requests: list[Request]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.path, json.dumps([asdict(r) for r in requests], indent=1))

