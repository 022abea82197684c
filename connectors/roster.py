"""A course's roster as every LMS reader hands it over, before f2git decides who may do what.

Readers (Canvas, Moodle, Stud.IP through their connectors' `read_roster`, LTI NRPS in f2git.lti) map their
LMS's own roles and states onto these few words and nothing else; the decisions (who fetches,
who manages, refusal reasons) are made in one place from `Enrolment`s.
"""
from __future__ import annotations

from dataclasses import dataclass

# What an enrolment lets its holder do.
LEARNER = "learner"
INSTRUCTOR = "instructor"  # teachers and course designers: fetch and manage
TA = "ta"  # teaching assistants: fetch and manage
OBSERVER = "observer"  # observers/guests/parents: nothing
OTHER = "other"  # a role f2git does not know: nothing
ROLES = (LEARNER, INSTRUCTOR, TA, OBSERVER, OTHER)
MANAGING_ROLES = (INSTRUCTOR, TA)

# The enrolment's state in the LMS; only "active" counts.
ACTIVE = "active"
INVITED = "invited"  # Canvas: invited, not yet accepted
INACTIVE = "inactive"  # suspended, not started yet, or deactivated by the teacher
COMPLETED = "completed"  # the course or section has ended for this user
DELETED = "deleted"
STATES = (ACTIVE, INVITED, INACTIVE, COMPLETED, DELETED)


@dataclass(frozen=True)
class Enrolment:
    """One enrolment of one LMS user (a user with several enrolments has several)."""

    lms_user: str  # the LMS's own id of the user; never shown to learners
    hub_user: str | None  # the `hub_username` field's value, as the hub normalises it (lowercase); None: unmapped
    role: str  # one of ROLES
    state: str  # one of STATES

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}")


def hub_name(value: object) -> str | None:
    """An LMS field's value as a hub user name (JupyterHub lowercases names), or None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text.lower() or None


# A roster longer than this is no course's: an endless or hostile answer, refused whole.
MAX_ENROLMENTS = 50_000


class RosterCollector:
    """Collects a reader's enrolments, refusing (SourceError) past MAX_ENROLMENTS and
    telling afterwards whether the hub-name field was in any user record at all."""

    def __init__(self, label: str, limit: int | None = None):
        self.label = label
        self.limit = limit or MAX_ENROLMENTS
        self.enrolments: list[Enrolment] = []
        self.records = 0  # user records seen
        self.with_field = 0  # … that carried the hub-name field (even empty)

    def add(self, enrolment: Enrolment, *, field_present: bool = True) -> None:
        from .base import SourceError

        if len(self.enrolments) >= self.limit:
            raise SourceError(f"{self.label}: the roster has more than {self.limit} enrolments;"
                              " refused as no course's roster")
        self.enrolments.append(enrolment)
        self.records += 1
        self.with_field += field_present

    def field_hidden(self) -> bool:
        """True when the LMS left the field out of every user record (a permission it withholds)."""
        return self.records > 0 and self.with_field == 0
