"""Keep a course's `hub_group` equal to its LMS roster, through the hub's REST API.

The group is created by the hub itself (`f2git hub-config` adds it to `load_groups`, which only
ever adds), so f2git's service role needs `groups!group=<name>` for that group alone, nothing
wider. Only a roster that was read is mirrored: a failed or never-read roster changes nothing.
Hub users who do not exist yet are left out and added by a later read.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from f2git.config import CourseConfig

log = logging.getLogger("f2git.hubgroups")


def group_name(course: "CourseConfig") -> str:
    return course.hub_group.replace("{course}", course.name)


def group_scopes(courses) -> list[str]:
    """The service scopes `hub_group` needs: one filtered scope per group a course asks for."""
    return [f"groups!group={group_name(course)}" for course in courses if course.hub_group]


class HubGroups:
    def __init__(self, api_url: str, api_token: str):
        self.api_url = api_url.rstrip("/")
        self._token = api_token

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        from tornado.httpclient import AsyncHTTPClient

        response = await AsyncHTTPClient().fetch(
            f"{self.api_url}{path}", method=method, headers={"Authorization": f"token {self._token}",
                                                              "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body), allow_nonstandard_methods=True, request_timeout=30)
        return json.loads(response.body or b"{}")

    async def sync(self, group: str, members: set[str]) -> tuple[int, int]:
        """Make `group`'s users equal to `members` (hub names); (added, removed)."""
        from tornado.httpclient import HTTPClientError

        path = f"/groups/{quote(group, safe='')}/users"
        current = set((await self._call("GET", f"/groups/{quote(group, safe='')}")).get("users") or ())
        add, remove = sorted(members - current), sorted(current - members)
        added = 0
        if add:
            try:
                await self._call("POST", path, {"users": add})
                added = len(add)
            except HTTPClientError as error:
                if error.code != 400:
                    raise
                for name in add:  # someone without a hub account yet: add the others one by one
                    try:
                        await self._call("POST", path, {"users": [name]})
                        added += 1
                    except HTTPClientError as single:
                        if single.code != 400:
                            raise
        if remove:
            await self._call("DELETE", path, {"users": remove})
        return added, len(remove)


def keep_groups(config, keeper, auth) -> None:
    """Mirror each read roster into its course's hub_group (with auth = "jupyterhub" only)."""
    membership = getattr(auth, "membership", None)
    if membership is None or not any(course.hub_group for course in config.courses.values()):
        return
    groups = HubGroups(membership.api_url, membership._api_token)

    async def mirror(course, roster) -> None:
        if not course.hub_group:
            return
        from f2git.roster import Membership

        group = group_name(course)
        try:
            added, removed = await groups.sync(group, {m["hub_user"] for m in Membership(roster).members()})
        except Exception as error:  # the hub's answer may name users: log the kind of failure only
            code = getattr(error, "code", None)
            log.warning("hub group %s of course %s not updated: %s", group, course.name,
                        f"HTTP {code}" if code else type(error).__name__)
            return
        if added or removed:
            log.info("hub group %s of course %s: %d added, %d removed", group, course.name, added, removed)

    keeper.on_read(mirror)
