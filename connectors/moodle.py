"""Moodle: the files of a course through its web service API, as students see them.

Reads `core_course_get_contents` (sections → modules → contents) and, for assignments,
`mod_assign_get_assignments` (intro attachments). Copies files of `resource` and `folder`
modules and assignments' intro attachments; links (`url`), pages and other activities
stay in Moodle.

Two ways to run it. A student's token: Moodle filters by itself (`uservisible`). A
teacher's token: Moodle shows everything, so the rules are applied here: hidden sections
and modules, stealth modules (`visibleoncoursepage` 0) and modules whose `availability`
JSON is closed now stay out; date conditions are evaluated (also nested and negated), and
a module with a condition f2git cannot decide (grade, completion, profile, group…) is
withheld and counted in `Listing.withheld`. Moodle gives a teacher a section's own
restriction only as text (`availabilityinfo`, when the teacher does not meet it) or as a
flag (`hasrestrictions` of core_courseformat_get_state): such a section withholds its modules.

The token travels in POST bodies only, never in a URL, and never to another host.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Callable, Iterable, Mapping
from urllib.parse import urljoin

from ._http import BodyStream, SessionConnector, SourceSession, origin, where
from ._json import loads
from ._lms import Release, api_shape, credentials_hint, folder_path, utc_now
from ._time import epoch_time
from .base import AuthError, Connector, Entry, Listing, SourceError
from .roster import ACTIVE, INSTRUCTOR, LEARNER, OBSERVER, OTHER, TA, Enrolment, RosterCollector, hub_name

SERVER = "webservice/rest/server.php"
# The web service functions a token's service must include.
FUNCTIONS = ("core_course_get_contents", "mod_assign_get_assignments")
STATE_FUNCTION = "core_courseformat_get_state"  # recommended for a teacher's token
REDIRECTS = (301, 302, 303, 307, 308)
FILE_MODULES = {"resource", "folder", "assign"}

# Rosters: core_enrol_get_enrolled_users (enrol/externallib.php), active enrolments only.
ROSTER_FUNCTION = "core_enrol_get_enrolled_users"
ROSTER_ROLES = {"student": LEARNER, "editingteacher": INSTRUCTOR, "manager": INSTRUCTOR, "teacher": TA,
                "guest": OBSERVER}
HUB_USERNAME_FIELDS = ("username", "email", "idnumber", "id")
# What the token's user needs before Moodle puts a field in other users' records (user/lib.php,
# user_get_user_details).
FIELD_CAPABILITIES = {"username": "moodle/user:viewalldetails",
                      "email": "moodle/course:useremail (or the users' e-mail display setting)",
                      "idnumber": "moodle/site:viewuseridentity with idnumber in the site's showuseridentity"}

# Reasons for Listing.withheld, as the dashboard shows them.
SECTION_RESTRICTED = "section restriction (teacher token)"
UNREADABLE = "unreadable restriction"
UNPLACED = "subsection outside the course page"

# Moodle's errorcodes (HTTP 200 with {"exception", "errorcode", "message"}) that mean the
# token cannot be used, and what to do about them.
AUTH_ERRORS = {
    "invalidtoken": "Moodle rejected the token",
    "accessexception": "Moodle refused the token access (its service must include "
                       + " and ".join(FUNCTIONS) + " and allow downloading files,"
                       " and the token's user may use it)",
    "errorcoursecontextnotvalid": "Moodle: the token's user cannot open the course (enrolled in it?)",
    "requireloginerror": "Moodle: the token's user cannot open the course (enrolled in it?)",
    "usernotfullysetup": "Moodle: the token's user must first complete their Moodle profile",
    "forcepasswordchangenotice": "Moodle: the token's user must first change their Moodle password",
}
SOURCE_ERRORS = {
    "servicenotavailable": "Moodle: the web service is not available (an admin must enable web services,"
                           " the REST protocol and the token's service)",
    "invalidrecord": "Moodle: the course does not exist (key 'course_id')",
    "sitemaintenance": "Moodle: the site is in maintenance mode; try again later",
}


@dataclass
class MoodleOptions:
    url: str = ""
    course_id: int = 0
    token_env: str = ""
    folder: str = ""

    def validate(self) -> None:
        if not self.url:
            raise ValueError("missing key 'url'")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"key 'url': expected the site's http(s) base URL like https://moodle.example.edu,"
                             f" got {self.url!r}")
        if "webservice/" in self.url or "course/view.php" in self.url:
            raise ValueError("key 'url': give the site's base URL; f2git appends /webservice/rest/server.php")
        if not isinstance(self.course_id, int) or self.course_id <= 0:
            raise ValueError("missing key 'course_id' (the number in …/course/view.php?id=N)")
        if not self.token_env:
            raise ValueError("missing key 'token_env'")


# -- availability: the JSON that availability/classes/tree.php reads ------------------------------

def _holds(node: Mapping, now: float) -> bool | None:
    """Whether a condition tree lets students in at `now`; None when it depends on things
    f2git cannot know (grades, completion, profile, groups…). Malformed trees raise ValueError."""
    if not isinstance(node, Mapping):
        raise ValueError("not an object")
    if "type" in node:
        if node["type"] != "date":
            return None
        moment = float(node["t"])
        if node["d"] == ">=":
            return now >= moment
        if node["d"] == "<":
            return now < moment
        raise ValueError(f"unknown date direction {node['d']!r}")
    op, children = node["op"], node["c"]
    if op not in ("&", "|", "!&", "!|") or not isinstance(children, list):
        raise ValueError("unknown operator")
    if not children:
        return True  # Moodle: a tree without conditions is available
    values = [_holds(child, now) for child in children]
    if op in ("&", "!&"):
        value = False if False in values else None if None in values else True
    else:
        value = True if True in values else None if None in values else False
    return value if value is None or not op.startswith("!") else not value


def _walk(node: Any) -> Iterable[Mapping]:
    """Every condition (leaf) of a tree."""
    if isinstance(node, Mapping):
        if "type" in node:
            yield node
        for child in node.get("c") or ():
            yield from _walk(child)


def _kind(name: Any) -> str:
    """A condition's plugin name (availability_<name>) as shown on the dashboard; nothing else."""
    text = str(name)
    return text if re.fullmatch(r"[a-z][a-z0-9_]{0,39}", text) else "unknown"


def restriction(raw: Any, now: datetime) -> tuple[Release, str | None]:
    """A module's `availability` JSON → whether it is released now, when it will be, and
    why f2git cannot decide (a withheld reason) when it cannot."""
    if raw in (None, ""):
        return Release(True), None
    try:
        tree = loads(raw) if isinstance(raw, str) else raw
        if tree is None:
            return Release(True), None
        value = _holds(tree, now.timestamp())
        if value:
            return Release(True), None
        if value is None:
            kinds = sorted({_kind(leaf.get("type")) for leaf in _walk(tree) if leaf.get("type") != "date"})
            return Release.NEVER, f"{'/'.join(kinds)} restriction"
        # Closed now: the first date at which the tree opens is a refresh moment.
        for moment in sorted({float(leaf["t"]) for leaf in _walk(tree) if leaf.get("type") == "date"}):
            if moment > now.timestamp() and _holds(tree, moment):
                return Release(False, epoch_time(moment)), None
        return Release.NEVER, None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return Release.NEVER, UNREADABLE


# -- names --------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def folder_name(name: Any, fallback: str) -> str:
    """A section or module name as one folder name: entities decoded (Moodle's names are
    HTML-formatted), no slashes or control characters, never empty."""
    text = _CONTROL.sub("", html.unescape(str(name or "")))
    text = _SPACES.sub(" ", text.replace("/", "-").replace("\\", "-")).strip().rstrip(".")
    return text or fallback


def _flag(item: Mapping, key: str, default: int = 1) -> bool:
    """Moodle's 0/1 (or true/false) flags; absent means the default."""
    value = item.get(key, default)
    return bool(int(value)) if not isinstance(value, bool) else value


# -- gates: what stands between students and a module ---------------------------------------------

Gate = tuple[Release, "str | None"]  # (release, why f2git withholds it when it cannot decide)
OPEN: Gate = (Release(True), None)
CLOSED: Gate = (Release.NEVER, None)


def combine(*gates: Gate) -> Gate:
    """Every gate must let students in. A closed one wins (nothing to count: students never
    see it), then one f2git cannot decide; else it opens when the last one opens."""
    if any(not release.visible and release.at is None and not reason for release, reason in gates):
        return CLOSED
    reasons = [reason for _, reason in gates if reason]
    if reasons:
        return Release.NEVER, reasons[0]
    waiting = [release.at for release, _ in gates if not release.visible]
    return (Release(False, max(waiting)), None) if waiting else OPEN


class _Walk:
    """One listing's state while the sections are walked."""

    def __init__(self, now: datetime, restricted: set[int]):
        self.now = now
        self.restricted = restricted  # ids of sections with a restriction of their own (teacher token)
        self.delegated: dict[Any, dict] = {}
        self.listing = Listing()
        self.folders: set[str] = {""}
        self.released: list[tuple[str, dict]] = []  # (folder, module)
        self.upcoming: list[datetime] = []

    def withhold(self, reason: str) -> None:
        self.listing.withheld[reason] = self.listing.withheld.get(reason, 0) + 1

    def section_gate(self, section: dict) -> Gate:
        if section.get("uservisible", True) is False or not _flag(section, "visible") \
                or _flag(section, "hiddenbynumsections", 0):
            return CLOSED
        if section.get("availabilityinfo") or section["id"] in self.restricted:
            return Release.NEVER, SECTION_RESTRICTED
        return OPEN

    def module_gate(self, module: dict) -> Gate:
        if module.get("uservisible", True) is False or not _flag(module, "visible") \
                or not _flag(module, "visibleoncoursepage"):
            return CLOSED  # hidden, stealth, or (student token) not for this student
        return restriction(module.get("availability"), self.now)


class MoodleConnector(SessionConnector, Connector):
    source = "moodle"
    label = "Moodle"
    roster_fields = HUB_USERNAME_FIELDS
    Options = MoodleOptions

    # Injectable for tests: the clock and the sleep used between retries.
    now: Callable[[], datetime] = staticmethod(utc_now)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, options: MoodleOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self.base_url = options.url.rstrip("/")
        self.server_url = f"{self.base_url}/{SERVER}"
        self._token = ""

    def make_session(self) -> SourceSession:
        self._token = self.secret(self.options.token_env)
        return SourceSession(self.label, self.base_url, secrets=(self._token,),
                             sleep=lambda seconds: self.sleep(seconds))

    def _token_hint(self):
        return credentials_hint(f"check the token in ${self.options.token_env}")

    # -- the web service ------------------------------------------------------------------------

    def call(self, function: str, params: Mapping[str, Any]) -> Any:
        """One web service function; the token goes in the POST body, not in the URL."""
        session = self.session
        form = {"wstoken": self._token, "wsfunction": function, "moodlewsrestformat": "json", **params}
        with self._token_hint():
            response = session.request("POST", self.server_url, data=form, allow_redirects=False,
                                       ok=(200, *REDIRECTS))
            if response.is_redirect:
                # Never re-send the token: look at where it leads without it (a login page?).
                location = urljoin(self.server_url, response.headers.get("Location", ""))
                response.close()
                session.get_json(location)
                raise session.fail(f"the web service redirected to {where(location)}; check key 'url'")
            data = session.json_body(response)
        if isinstance(data, dict) and "errorcode" in data and ("exception" in data or "error" in data):
            raise self._error(data)
        return data

    def _error(self, data: Mapping) -> SourceError:
        code = str(data.get("errorcode"))
        said = str(data.get("message") or data.get("error") or "")[:300]
        if code in AUTH_ERRORS:
            error = AuthError(self.session.redact(f"{AUTH_ERRORS[code]} ({code}: {said});"
                                                  f" check the token in ${self.options.token_env}"))
        elif code in SOURCE_ERRORS:
            error = SourceError(self.session.redact(f"{SOURCE_ERRORS[code]} ({code})"))
        else:
            error = self.session.fail(f"the web service answered with an error ({code}: {said})")
        error.errorcode = code
        return error

    # -- the roster -----------------------------------------------------------------------------

    def read_roster(self, hub_username: str = "") -> list[Enrolment]:
        """The course's active enrolments, named by the user field `hub_username` (default username)."""
        field = hub_username or "username"
        if field not in HUB_USERNAME_FIELDS:
            raise SourceError(f"Moodle: hub_username {field!r} is not one of {', '.join(HUB_USERNAME_FIELDS)}")
        try:
            users = self.call(ROSTER_FUNCTION, {"courseid": self.options.course_id,
                                                "options[0][name]": "onlyactive", "options[0][value]": 1})
        except SourceError as error:
            if getattr(error, "errorcode", "") == "accessexception":
                raise AuthError(f"Moodle refused {ROSTER_FUNCTION}: add it to the token's web service, and give"
                                " the token's user moodle/course:viewparticipants in the course") from None
            raise
        if not isinstance(users, list):
            raise self.session.fail(f"{ROSTER_FUNCTION} did not answer with a list of users")
        collected = RosterCollector(self.label)
        with api_shape(self.label):
            for user in users:
                roles = [ROSTER_ROLES.get(role.get("shortname"), OTHER) for role in user.get("roles") or ()] or [OTHER]
                for role in dict.fromkeys(roles):
                    collected.add(Enrolment(str(user["id"]), hub_name(user.get(field)), role, ACTIVE),
                                  field_present=field in user)
        if field in FIELD_CAPABILITIES and collected.field_hidden():
            raise SourceError(f"Moodle: the token's user may not see users' {field} (hub_username): it needs"
                              f" {FIELD_CAPABILITIES[field]} in the course, or pick another hub_username")
        return collected.enrolments

    # -- the listing ----------------------------------------------------------------------------

    def list(self, state: Mapping[str, Any]) -> Listing:
        course = self.options.course_id
        sections = self.call("core_course_get_contents", {"courseid": course})
        if not isinstance(sections, list):
            raise self.session.fail("core_course_get_contents did not answer with a list of sections")
        with api_shape(self.label):
            return self._list(sections)

    def _list(self, sections: list[dict]) -> Listing:
        # A teacher's token (it gets `availability`) sees restricted sections as open.
        teacher = any("availability" in module for section in sections for module in section["modules"])
        walk = _Walk(self.now(), self._restricted_sections() if teacher else set())
        # Moodle 4.5+: a subsection's section is "delegated" to its module (component,
        # itemid); it lies where that module lies and is open only when the module is.
        walk.delegated = {section["itemid"]: section for section in sections
                          if section.get("component") == "mod_subsection"}
        for section in sections:
            if section.get("component"):
                continue
            folder = "" if int(section.get("section", -1)) == 0 else \
                folder_name(section.get("name"), f"Section {section.get('section', section['id'])}")
            self._section(walk, section, folder, OPEN)
        for section in walk.delegated.values():  # no subsection module leads there: never released
            for module in section["modules"]:
                if module["modname"] in FILE_MODULES:
                    walk.withhold(UNPLACED)
        top = folder_path(self.options.folder)
        if top not in walk.folders:
            raise SourceError(f"Moodle: course {self.options.course_id} has no folder {top!r} (key 'folder')")
        listing = walk.listing
        assignments: dict[int, dict] | None = None
        for folder, module in walk.released:
            if module["modname"] == "assign":
                if assignments is None:
                    assignments = self._assignments()
                files = self._attachments(assignments.get(module["id"]), walk.now, walk.upcoming)
            else:
                files = [item for item in module.get("contents") or () if item.get("type") == "file"]
            for item in files:
                path = self._path(folder, item)
                if top and not path.startswith(top + "/"):
                    continue
                listing.entries.append(self._entry(path[len(top):].lstrip("/"), module, item))
        listing.entries.sort(key=lambda entry: entry.path)
        listing.next_release = min(walk.upcoming, default=None)
        return listing

    def _section(self, walk: "_Walk", section: dict, folder: str, above: "Gate") -> None:
        """Release what a section holds, behind `above` (the gates of the sections and the
        subsection module it lies in)."""
        walk.folders.add(folder)
        gate = combine(above, walk.section_gate(section))
        for module in section["modules"]:
            if module["modname"] == "subsection":
                inner = walk.delegated.pop(module.get("instance"), None)  # each one once: no loops
                if inner is not None:
                    name = folder_name(module.get("name"), f"Module {module['id']}")
                    self._section(walk, inner, f"{folder}/{name}" if folder else name,
                                  combine(gate, walk.module_gate(module)))
                continue
            if module["modname"] not in FILE_MODULES:
                continue
            module_folder = self._module_folder(folder, module)
            walk.folders.add(module_folder)
            for item in module.get("contents") or ():
                walk.folders.update(self._parents(module_folder, item))
            release, reason = combine(gate, walk.module_gate(module))
            if reason:
                walk.withhold(reason)
            elif release.visible:
                walk.released.append((module_folder, module))
            elif release.at is not None:
                walk.upcoming.append(release.at)

    def _restricted_sections(self) -> set[int]:
        """Ids of sections with an access restriction of their own. The course editor's state
        (`core_courseformat_get_state`, Moodle 4.x) flags them for a teacher (`hasrestrictions`);
        without it only restrictions the teacher does not meet show (`availabilityinfo`)."""
        try:
            raw = self.call(STATE_FUNCTION, {"courseid": self.options.course_id})
        except SourceError as error:
            if getattr(error, "errorcode", "") in ("accessexception", "invalidrecord"):
                return set()  # not in the token's service, or a Moodle without it
            raise
        with api_shape(self.label):
            state = loads(raw)
            return {section["id"] for section in state["section"] if section.get("hasrestrictions")}

    @staticmethod
    def _module_folder(section_folder: str, module: dict) -> str:
        """Files of a resource lie in their section's folder; a folder or an assignment is a
        folder of its own, named like the module."""
        if module["modname"] == "resource":
            return section_folder
        name = folder_name(module.get("name"), f"Module {module['id']}")
        return f"{section_folder}/{name}" if section_folder else name

    @staticmethod
    def _path(folder: str, item: dict) -> str:
        inside = "/".join(part for part in str(item.get("filepath") or "/").split("/") if part)
        return "/".join(part for part in (folder, inside, item["filename"]) if part)

    def _parents(self, folder: str, item: dict) -> Iterable[str]:
        parts = self._path(folder, item).split("/")[:-1]
        return ("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))

    def _assignments(self) -> dict[int, dict]:
        course_id = self.options.course_id
        # Also for a token's user who may see the course without being enrolled (an admin).
        data = self.call("mod_assign_get_assignments", {"courseids[0]": course_id, "includenotenrolledcourses": 1})
        with api_shape(self.label):
            for warning in data.get("warnings") or ():
                if warning["item"] == "course" and int(warning["itemid"]) == course_id:
                    # Not an empty course: its assignments' files would silently go missing.
                    raise self.session.fail(f"mod_assign_get_assignments cannot read course {course_id}"
                                            f" ({str(warning.get('message', ''))[:200]})")
            return {assignment["cmid"]: assignment for course in data["courses"]
                    for assignment in course["assignments"]}

    @staticmethod
    def _attachments(assignment: dict | None, now: datetime, upcoming: list[datetime]) -> list[dict]:
        """An assignment's intro attachments; Moodle leaves them out until the description shows
        (`allowsubmissionsfromdate`, unless "always show description"), which is then a refresh moment."""
        if assignment is None:
            return []
        if "introattachments" not in assignment:
            opens = int(assignment.get("allowsubmissionsfromdate") or 0)
            if opens > now.timestamp():
                upcoming.append(epoch_time(opens))
            return []
        stamp = assignment.get("timemodified")
        return [{"timemodified": stamp, **item} for item in assignment["introattachments"]]

    def _entry(self, path: str, module: dict, item: dict) -> Entry:
        size = item.get("filesize")
        size = size if type(size) is int and size >= 0 and not item.get("isexternalfile") else None
        if not isinstance(item["fileurl"], str) or not item["fileurl"].startswith(("https://", "http://")):
            raise ValueError("fileurl is not a URL")
        # Per file, not per module: one changed file in a folder changes one version.
        version = f"{module['id']}:{item.get('timemodified')}:{item.get('filesize')}"
        return Entry(path, size, version, ref=(item["fileurl"], item.get("mimetype") or ""))

    # -- downloads ------------------------------------------------------------------------------

    def open(self, entry: Entry) -> BinaryIO:
        url, mimetype = entry.ref
        session = self.session
        with self._token_hint():
            if origin(url) != origin(self.base_url):
                response = session.request("GET", url, stream=True)  # not Moodle: no token
            else:
                response = session.request("POST", url, data={"token": self._token}, stream=True,
                                           allow_redirects=False, ok=(200, *REDIRECTS))
                if response.is_redirect:  # e.g. to an object store: follow without the token
                    location = urljoin(url, response.headers.get("Location", ""))
                    response.close()
                    response = session.request("GET", location, stream=True)
        self._check_download(response, entry, mimetype)
        return BodyStream(response, session, expected_size=entry.size)

    def _check_download(self, response, entry: Entry, mimetype: str) -> None:
        """Moodle answers a bad token or a missing file with an HTML page or a JSON error."""
        kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind == "text/html" and mimetype != "text/html":
            response.close()
            raise self.session.fail(f"answered with an HTML page instead of the file at {where(response.url)}"
                                    " (a login page? check the token)")
        if kind == "application/json" and mimetype != "application/json":
            body = response.raw.read(65536, decode_content=True)
            response.close()
            try:
                data = loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict) and "errorcode" in data:
                raise self._error(data)
            raise self.session.fail(f"answered with JSON instead of the file at {where(response.url)}")
