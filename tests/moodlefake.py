"""A `responses` fake of Moodle's web service for one course.

The fake answers like `webservice/rest/server.php` does (shapes in tests/fixtures/moodle,
built from Moodle's source): for a teacher's token every section and module with
`visible`, `visibleoncoursepage` and the `availability` JSON; for a student's token only what
Moodle lets the student see. Files download from `webservice/pluginfile.php` with the token
in the POST body.

Paths map onto a course like an instructor builds it: "a.txt" is a file (resource) in the
top section, "week1/a.txt" a file in section "week1", "week1/data/x/y.csv" a file in
subfolder "x" of folder module "data" in section "week1".

`FakeMoodle` has the hooks tests/lms_contract.py asks of an LMS fake.
"""
from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import responses

from connectors.moodle import MoodleConnector, MoodleOptions
from tests.fixtures import moodle as ws

BASE = ws.MOODLE_URL
COURSE = 4711
TOKEN = "5f0c3e7d9a1b2c4d6e8f0a1b2c3d4e5f"  # Moodle tokens are 32 hex digits
NOW = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


class FakeMoodle:
    """The part of Moodle f2git talks to, for one course."""

    def __init__(self, mock: responses.RequestsMock, *, student: bool = False):
        self.mock = mock
        self.student = student  # answer as for a student's token
        self.ids = itertools.count(101)
        self.clock = NOW - timedelta(days=30)
        self.sections: dict[str, dict] = {}  # name ("" = top section) → settings
        self.modules: dict[tuple[str, str], dict] = {}  # (section, folder name or file name) → module
        self.injected: list = []  # canned answers core_course_get_contents serves first
        self.canned: dict[str, tuple] = {}  # wsfunction → the answer it always gets
        self.login_page = False
        self.state_function = True  # the token's service includes core_courseformat_get_state
        self.calls: list[str] = []  # wsfunctions called
        # the course's participants: username -> (roles, active); the token's user sees usernames
        self.participants: dict[str, tuple[list[str], bool]] = {}
        self.can_view_details = True
        self.downloads: list[str] = []  # file paths downloaded
        self.forms: list[dict] = []  # every POST body
        self.section("")
        mock.add_callback(responses.POST, f"{BASE}/webservice/rest/server.php", callback=self._server)
        mock.add_callback(responses.POST, re.compile(rf"{re.escape(BASE)}/webservice/pluginfile\.php/.*"),
                          callback=self._pluginfile)
        mock.add(responses.GET, f"{BASE}/login/index.php", content_type="text/html; charset=utf-8",
                 body="<!DOCTYPE html><html><body><form id='login'>Log in</form></body></html>")

    # --- the instructor's side -------------------------------------------------------------

    def _tick(self) -> int:
        self.clock += timedelta(minutes=7)
        return unix(self.clock)

    def section(self, name: str, **settings) -> dict:
        if name not in self.sections:
            self.sections[name] = {"id": next(self.ids), "number": len(self.sections), "visible": 1,
                                   "availabilityinfo": None, "hiddenbynumsections": 0, "restricted": False,
                                   "component": None, "itemid": None}
        self.sections[name].update(settings)
        return self.sections[name]

    def module(self, section: str, name: str, modname: str, **settings) -> dict:
        self.section(section)
        key = (section, name)
        if key not in self.modules:
            self.modules[key] = {"cmid": next(self.ids), "instance": next(self.ids), "contextid": next(self.ids),
                                 "name": name.rsplit(".", 1)[0] if modname == "resource" else name,
                                 "modname": modname, "visible": 1, "visibleoncoursepage": 1,
                                 "availability": None, "files": {}, "revision": 1, "student_sees": True}
        self.modules[key].update(settings)
        return self.modules[key]

    def subsection(self, parent: str, name: str, **settings) -> dict:
        """A subsection (Moodle 4.5+): a module in `parent` whose own section is "parent/name"."""
        module = self.module(parent, name, "subsection", **settings)
        self.section(f"{parent}/{name}", component="mod_subsection", itemid=module["instance"])
        return module

    def _locate(self, path: str) -> tuple[tuple[str, str], str, str]:
        first_two = "/".join(path.split("/")[:2])
        if path.count("/") >= 2 and self.sections.get(first_two, {}).get("component"):
            inner = path[len(first_two) + 1:].split("/")  # below a subsection: like below a section
            if len(inner) == 1:
                return (first_two, inner[0]), "/", inner[0]
            return (first_two, inner[0]), "/" + "".join(p + "/" for p in inner[1:-1]), inner[-1]
        parts = path.split("/")
        if len(parts) <= 2:
            section = parts[0] if len(parts) == 2 else ""
            return (section, parts[-1]), "/", parts[-1]
        return (parts[0], parts[1]), "/" + "".join(p + "/" for p in parts[2:-1]), parts[-1]

    def put(self, path: str, content: bytes, **settings) -> dict:
        key, filepath, filename = self._locate(path)
        modname = "folder" if filepath != "/" or key[1] != filename else "resource"
        module = self.module(*key, modname, **settings)
        old = module["files"].get((filepath, filename))
        if old is None or old["content"] != content:
            stamp = self._tick()
            module["files"][(filepath, filename)] = {"content": content, "modified": stamp,
                                                     "created": old["created"] if old else stamp}
            module["revision"] += 1
        return module

    def remove(self, path: str) -> None:
        key, filepath, filename = self._locate(path)
        del self.modules[key]["files"][(filepath, filename)]
        if not self.modules[key]["files"]:
            del self.modules[key]

    def publish(self, files: Mapping[str, bytes]) -> None:
        for key, module in list(self.modules.items()):
            for (filepath, filename) in list(module["files"]):
                path = "/".join(p for p in (key[0], key[1] if module["modname"] != "resource" else "",
                                            filepath.strip("/"), filename) if p)
                if path not in files and module["modname"] != "assign":
                    self.remove(path)
        for path, content in files.items():
            self.put(path, content)

    def assignment(self, section: str, name: str, attachments: dict[str, bytes], *, shown: bool = True,
                   opens: int = 0, **settings) -> dict:
        module = self.module(section, name, "assign", shown=shown, opens=opens, **settings)
        for filename, content in attachments.items():
            module["files"][("/", filename)] = {"content": content, "modified": self._tick(), "created": 0}
        return module

    # --- hooks of tests.lms_contract ---------------------------------------------------------

    secret = TOKEN
    env = {"MOODLE_TOKEN": TOKEN}
    now = NOW

    @staticmethod
    def course_table() -> dict:
        return {"source": "moodle", "url": BASE, "course_id": COURSE, "token_env": "MOODLE_TOKEN"}

    def _target(self, path: str) -> list[dict]:
        if "/" not in path:
            return [m for (section, _), m in self.modules.items() if section == path]
        section, name = path.split("/", 1)
        return [self.modules[(section, name)]]

    def open_later(self, path: str, at: datetime) -> None:
        """Moodle shows a teacher a section's restriction only as text: the instructor restricts
        the modules (the section's folder) by date, which f2git can read."""
        for module in self._target(path):
            module["availability"] = json.dumps(ws.tree("&", ws.date(">=", unix(at))))

    def close_folder(self, path: str) -> None:
        if "/" not in path:
            self.section(path, visible=0)
        else:
            self._target(path)[0]["visible"] = 0

    def fail_page(self, number: int, answers: list) -> None:
        """Moodle lists a course in one answer, without pages: the listing's answer fails."""
        self.injected = list(answers)

    @staticmethod
    def reject(connector: MoodleConnector) -> str:
        connector.env = {"MOODLE_TOKEN": "0badc0ffee0badc0ffee0badc0ffee00"}
        return "0badc0ffee0badc0ffee0badc0ffee00"

    def connector(self, **options) -> MoodleConnector:
        opts = MoodleOptions(url=BASE, course_id=COURSE, token_env="MOODLE_TOKEN", **options)
        opts.validate()
        connector = MoodleConnector(opts, course="da101", env=dict(self.env))
        connector.now = lambda: NOW
        connector.sleeps = []
        connector.sleep = connector.sleeps.append
        return connector

    # --- Moodle's side -----------------------------------------------------------------------

    @staticmethod
    def _json(data) -> tuple:
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(data)

    def _server(self, request):
        form = {key: values[0] for key, values in parse_qs(request.body or "").items()}
        self.forms.append(form)
        if self.login_page:
            return 303, {"Location": f"{BASE}/login/index.php"}, ""
        if form.get("wstoken") != TOKEN:
            return self._json(ws.error("invalidtoken"))
        function = form.get("wsfunction")
        self.calls.append(function)
        if function in self.canned:
            return self.canned[function]
        if function == "core_course_get_contents":
            if self.injected:
                return self.injected.pop(0)
            if form.get("courseid") != str(COURSE):
                return self._json(ws.error("errorcoursecontextnotvalid"))
            return self._json(self._contents())
        if function == "core_courseformat_get_state" and self.state_function and not self.student:
            sections = self._contents()
            for section, settings in zip(sections, self.sections.values()):
                section["hasrestrictions"] = bool(settings["restricted"] or settings["availabilityinfo"])
            return self._json(ws.course_state(COURSE, sections))
        if function == "core_enrol_get_enrolled_users":
            if form.get("courseid") != str(COURSE):
                return self._json(ws.error("errorcoursecontextnotvalid"))
            only_active = form.get("options[0][name]") == "onlyactive" and form.get("options[0][value]") == "1"
            users = [ws.enrolled_user(number, username=name, email=f"{name}@example.edu", idnumber=f"M{number}",
                                      roles=roles, can_view_details=self.can_view_details)
                     for number, (name, (roles, active)) in enumerate(self.participants.items(), start=2)
                     if active or not only_active]
            return self._json(users)
        if function == "mod_assign_get_assignments":
            assert form.get("courseids[0]") == str(COURSE) and form.get("includenotenrolledcourses") == "1"
            return self._json(ws.assignments_answer(COURSE, self._assignments()))
        return self._json(ws.error("accessexception"))

    def _file_url(self, module: dict, filepath: str, filename: str) -> str:
        if module["modname"] == "assign":
            return ws.file_url(module["contextid"], "mod_assign", "introattachment", 0, filepath, filename)
        return ws.file_url(module["contextid"], f"mod_{module['modname']}", "content", module["revision"]
                           if module["modname"] == "resource" else 0, filepath, filename)

    def _contents_of(self, module: dict) -> list[dict] | None:
        if module["modname"] in ("assign", "subsection"):
            return None  # no export_contents: attachments come from get_assignments
        return [ws.content_file(filename=filename, filepath=filepath, size=len(f["content"]),
                                url=self._file_url(module, filepath, filename), created=f["created"],
                                modified=f["modified"], sortorder=1 if module["modname"] == "resource" else 0)
                for (filepath, filename), f in sorted(module["files"].items())]

    def _open(self, name: str) -> bool:
        """Whether a student may open a section: also its subsection module and parent section."""
        settings = self.sections[name]
        if not settings["visible"] or settings["availabilityinfo"] or settings["restricted"]:
            return False
        if settings["component"]:
            parent, module = name.rsplit("/", 1)
            return bool(self.modules.get((parent, module), {}).get("visible")) and self._open(parent)
        return True

    def _contents(self) -> list[dict]:
        sections = []
        for name, settings in self.sections.items():
            open_section = self._open(name)
            modules = []
            for (section, _), module in self.modules.items():
                if section != name:
                    continue
                sees = bool(module["visible"] and module["student_sees"] and open_section)
                if self.student and not (sees or (module["visible"] and module.get("info"))):
                    continue  # Moodle leaves out what a student may neither open nor see
                modules.append(ws.module(
                    cmid=module["cmid"], instance=module["instance"], contextid=module["contextid"],
                    name=module["name"], modname=module["modname"], visible=module["visible"],
                    visibleoncoursepage=module["visibleoncoursepage"],
                    uservisible=sees if self.student else True, teacher=not self.student,
                    availability=module["availability"], availabilityinfo=module.get("info") if self.student else None,
                    contents=self._contents_of(module)))
            sections.append(ws.section(
                sectionid=settings["id"], number=settings["number"], name=name or "General", modules=modules,
                visible=settings["visible"], uservisible=bool(open_section) if self.student else True,
                availabilityinfo=settings["availabilityinfo"], hiddenbynumsections=settings["hiddenbynumsections"],
                component=settings["component"], itemid=settings["itemid"]))
        return sections

    def _assignments(self) -> list[dict]:
        answer = []
        for (section, _), module in self.modules.items():
            if module["modname"] != "assign":
                continue
            files = [ws.external_file(filename=filename, size=len(f["content"]), modified=f["modified"],
                                      url=self._file_url(module, "/", filename))
                     for (_, filename), f in sorted(module["files"].items())]
            answer.append(ws.assignment(assignid=module["instance"], cmid=module["cmid"], course=COURSE,
                                        name=module["name"], modified=unix(self.clock), opens=module["opens"],
                                        attachments=files if module["shown"] else None))
        return answer

    def _pluginfile(self, request):
        form = parse_qs(request.body or "")
        if form.get("token", [""])[0] != TOKEN:
            return self._json({"error": "Invalid token - token not found", "errorcode": "invalidtoken",
                               "stacktrace": None, "debuginfo": None, "reproductionlink": None})
        parts = unquote(urlsplit(request.url).path).split("/pluginfile.php/", 1)[1].split("/")
        contextid, filename, filepath = int(parts[0]), parts[-1], "/" + "".join(p + "/" for p in parts[4:-1])
        for module in self.modules.values():
            stored = module["files"].get((filepath, filename))
            if module["contextid"] == contextid and stored is not None:
                self.downloads.append(filepath + filename)
                return 200, {"Content-Type": "application/octet-stream",
                             "Content-Disposition": f'attachment; filename="{filename}"'}, stored["content"]
        return 404, {"Content-Type": "text/plain"}, "Sorry, the requested file could not be found"
