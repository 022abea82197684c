"""`GET /api/courses/<course>/members`: the course's roster as f2git uses it, for its managers only."""
from __future__ import annotations

from datetime import datetime, timezone

from f2git.roster import Membership, Roster

from .base import JsonHandler, Refusal


def iso(moment: float | None) -> str | None:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def members_json(course: str, source: str, roster: Roster | None, membership: Membership | None) -> dict:
    """INTERFACE.md's shape, plus what managers need to fix names: unmapped and duplicates."""
    if roster is None or membership is None:
        roster, membership = Roster(course, source), Membership(Roster(course, source))
    return {"course": course, "source": roster.source, "read_at": iso(roster.read_at),
            "members": membership.members(), "unmapped": membership.unmapped,
            "duplicates": membership.duplicates, "error": roster.error, "error_since": iso(roster.error_since)}


class MembersHandler(JsonHandler):
    def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        if course.members != "lms" and not course.hub_group:
            raise Refusal(404, f"course {name!r} does not take its members from the LMS (members = \"{course.members}\")")
        keeper = self.settings["f2git_rosters"]
        entry = keeper.store.entry(name) or (None, None)
        self.write_json(members_json(name, course.roster_source, *entry))


ROUTES = [(r"/api/courses/([^/]+)/members/?", MembersHandler)]
