"""Release control over HTTP (f2git/release.py does the work, in a worker thread):

    POST /api/courses/<c>/retract        {"paths": [...], "reason": "..."}   managers
    POST /api/courses/<c>/release-again  {"paths": [...]}                    managers
    POST /api/courses/<c>/rollback       {"commit": "..."}                   managers (then on hold)
    POST /api/courses/<c>/resume         {}                                  managers
    POST /api/courses/<c>/pin            {"name": ..., "commit"?: ..., "remove"?: true}   managers
    GET  /api/courses/<c>/rewrites       old -> new commit ids, for pullhook   who may fetch

POSTs are refused cross-site (JsonHandler: Origin, JSON body); the dashboard's forms post
with its XSRF token to its own routes, which call the same functions.
"""
from __future__ import annotations

import asyncio
from typing import Any

from f2git import release, status

from .base import JsonHandler, Refusal

LOCK_WAIT = 60.0  # s a request waits for a running sync of the course before it is refused


def json_body(handler: JsonHandler, shape: dict[str, type], required: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object, each key of `shape` of its type, the `required` ones present."""
    body = handler.json_object()
    for key, value in body.items():
        if key not in shape:
            raise Refusal(400, f"unknown key {key!r} (known: {', '.join(shape)})")
        if not isinstance(value, shape[key]) or (shape[key] is list and not all(isinstance(v, str) for v in value)):
            raise Refusal(400, f"{key!r} must be {'a list of strings' if shape[key] is list else 'a string'}")
    for key in required:
        if key not in body:
            raise Refusal(400, f"{key!r} is required")
    return body


async def released(work, *args: Any, **kwargs: Any) -> Any:
    """`work` (a function of f2git/release.py) in a worker thread; its refusal answered in words."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except release.ReleaseError as error:
        raise Refusal(error.status, str(error)) from None


async def after_rewrite(handler: JsonHandler, course: str, commit: str, rewritten: bool = True) -> None:
    """The server forgets what it knew of the old main: stored answers of a rewritten history,
    and the cached head and status."""
    if rewritten:
        handler.settings["f2git_packcache"].drop_course(course)
    else:
        handler.settings["f2git_packcache"].snapshot_published(course)
    state = handler.refresher.state(course)
    state.record = await asyncio.to_thread(status.read_file, handler.config, course)
    state.record.commit, state.head_known = commit, True


class RetractHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        body = json_body(self, {"paths": list, "reason": str}, ("paths",))
        result = await released(release.retract, self.config, course, body["paths"],
                                reason=body.get("reason", ""), who=self.identity.name,
                                timeout=LOCK_WAIT)
        await after_rewrite(self, name, result.commit)
        self.write_json(result.to_json())


class ReleaseAgainHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        body = json_body(self, {"paths": list}, ("paths",))
        again = await released(release.release_again, self.config, course, body["paths"])
        result = await self.refresher.refresh(course)
        self.write_json({"course": name, "released": again, "sync": result.to_json()})


class RollbackHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        body = json_body(self, {"commit": str}, ("commit",))
        result = await released(release.rollback, self.config, course, body["commit"],
                                who=self.identity.name, timeout=LOCK_WAIT)
        await after_rewrite(self, name, result.commit, rewritten=False)
        self.write_json(result.to_json())


class ResumeHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        if not await asyncio.to_thread(release.resume, self.config, course):
            raise Refusal(409, f"course {name!r} is not on hold")
        result = await self.refresher.refresh(course)
        self.write_json({"course": name, "resumed": True, "sync": result.to_json()})


class PinHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        body = json_body(self, {"name": str, "commit": str, "remove": bool}, ("name",))
        if body.get("remove"):
            await released(release.unpin, self.config, course, body["name"], timeout=LOCK_WAIT)
            commit = None
        else:
            commit = await released(release.pin, self.config, course, body["name"], body.get("commit"),
                                    timeout=LOCK_WAIT)
        self.write_json({"course": name, "branch": f"release/{body['name']}", "commit": commit})


class RewritesHandler(JsonHandler):
    async def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_fetch(course)
        mapping = await asyncio.to_thread(release.rewrites, self.config, name)
        self.write_json({"course": name, "rewrites": mapping})


ROUTES = [
    (r"/api/courses/([^/]+)/retract/?", RetractHandler),
    (r"/api/courses/([^/]+)/release-again/?", ReleaseAgainHandler),
    (r"/api/courses/([^/]+)/rewrites/?", RewritesHandler),
    (r"/api/courses/([^/]+)/rollback/?", RollbackHandler),
    (r"/api/courses/([^/]+)/resume/?", ResumeHandler),
    (r"/api/courses/([^/]+)/pin/?", PinHandler),
]
