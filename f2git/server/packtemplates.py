"""The request shapes the pack cache builds answers for before the click (learnt templates).

The request bodies real clients send are learnt from the requests they made. In a body a
`want` or `have` of `main` or of the two snapshots before it becomes a placeholder; a
`shallow` line (where the student's shallow clone began) stays as it is. When a snapshot is
published, each template is filled in with the new commits and answered before the first
click asks: the student who cloned at snapshot 1 and fetched at 2 sends the same body, with
newer commits, when fetching 4 from 3.

What is kept is bounded and cannot be decided by one client (issue 18, items 6 and 12):
a template is at most MAX_TEMPLATE_BODY bytes; a course keeps MAX_TEMPLATES of them, ranked
by how many distinct clients sent them, then by whether they have the shape of what real
clones send (the depth-1 clone of main, the fetch from the previous snapshot, the ref
listing), then by recency; one client alone keeps at most PER_CLIENT of them. Each course's
templates are one small file, written off the event loop, at most once per SAVE_DELAY.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("f2git.packcache")

MAX_TEMPLATES = 32  # per course
MAX_TEMPLATE_BODY = 4096  # bytes: real clone and fetch bodies are a few hundred
PER_CLIENT = 16  # templates one client alone may keep in a course: half
MAX_CLIENTS = 64  # distinct clients counted per template (beyond: as many)
SAVE_DELAY = 1.0  # s: learning many templates at once writes each course's file once
OID = re.compile(rb"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")
# Lines of the requests git itself sends for a clone, a fetch and a ref listing.
_PLAIN_LINES = re.compile(rb"(command=(ls-refs|fetch)|agent=[\x21-\x7e]{1,64}|object-format=sha(1|256)|"
                          rb"session-id=[\x21-\x7e]{1,64}|peel|symrefs|unborn|ref-prefix (HEAD|refs/[\x21-\x7e]{0,64})|"
                          rb"thin-pack|ofs-delta|no-progress|include-tag|sideband-all|deepen 1|done|"
                          rb"want 0{40}( [\x20-\x7e]{0,400})?|have [0-9a-f]{40}|shallow [0-9a-f]{40})\n?")
_WALK = re.compile(rb"\{walk:[0-9a-f]{40}\}")

Template = tuple  # (method, action, query, content_type, protocol, body)


def _pkt_lines(body: bytes) -> list[bytes]:
    lines, at = [], 0
    while at < len(body):
        length = max(int(body[at:at + 4], 16), 4)  # checked pkt-lines; below 4: flush, delim
        lines.append(body[at:at + length])
        at += length
    return lines


def templates_of(body: bytes, snapshots: list[str]) -> list[bytes]:
    """The templates a request body teaches, none when it names an object other students
    would not have (their own commits).

    In want and have lines, `main` and the two snapshots before it become {0}, {1}, {2};
    `shallow` lines stay as they are (where that cohort's shallow clones begin), or become
    relative too (students who cloned the snapshot before); and haves that walk back from
    {1} to the shallow boundary become {walk:<boundary>}, which is how the history students
    fetch with grows from one snapshot to the next."""
    if not snapshots or len(body) > MAX_TEMPLATE_BODY:
        return []
    known = set(snapshots)
    recent = {commit.encode(): b"{%d}" % index for index, commit in enumerate(snapshots[:3])}
    lines = _pkt_lines(body)
    shallow, haves = set(), []
    for line in lines:
        named = OID.findall(line)
        if not named:
            continue
        kind = line[4:].split(b" ", 1)[0]
        if len(named) != 1 or kind not in (b"want", b"have", b"shallow") or named[0].decode() not in known:
            return []
        if kind == b"want" and named[0] != snapshots[0].encode():
            return []
        if kind == b"shallow":
            shallow.add(named[0])
        elif kind == b"have":
            haves.append(named[0])

    def variant(relative_shallow: bool, walk: bool) -> bytes | None:
        parts, walked = [], False
        for line in lines:
            named = OID.findall(line)
            kind = line[4:].split(b" ", 1)[0] if named else b""
            if kind == b"shallow" and not relative_shallow:
                parts.append(line)
            elif kind == b"have" and walk:
                if not walked:
                    parts.append(b"{walk:%s}" % haves[-1])
                    walked = True
            elif named and named[0] in recent:
                parts.append(line.replace(named[0], recent[named[0]]))
            elif named and kind != b"have":
                return None  # a shallow line relative to an older snapshot: nobody's
            else:
                parts.append(line)
        return b"".join(parts)

    found = [variant(False, False)]
    if shallow and shallow <= set(recent):
        found.append(variant(True, False))
    walked = [commit.encode() for commit in snapshots[1:len(haves) + 1]]
    if len(haves) > 1 and haves == walked and haves[-1] in shallow:
        found.append(variant(False, True))
    return [template for template in found if template is not None]


def fill(template: bytes, snapshots: list[str]) -> bytes | None:
    """A template with this course's newest snapshots; None when it needs one it lacks."""
    body = template
    walk = re.search(rb"\{walk:([0-9a-f]{40})\}", body)
    if walk:
        boundary = walk.group(1).decode()
        if boundary not in snapshots[1:]:
            return None
        haves = b"".join(b"0032have %s\n" % commit.encode()
                         for commit in snapshots[1:snapshots.index(boundary) + 1])
        body = body[:walk.start()] + haves + body[walk.end():]
    for index in range(3):
        placeholder = b"{%d}" % index
        if placeholder in body:
            if index >= len(snapshots):
                return None
            body = body.replace(placeholder, snapshots[index].encode())
    return body


def real_shape(template: Template) -> bool:
    """Whether a template has the shape of what git sends for a clone, a fetch of `main` or
    a ref listing: only lines git writes there, `deepen 1` if any depth, and wants of {0}."""
    method, action, _, _, _, body = template
    if method == "GET":
        return action == "info/refs" and body == b""
    if len(body) > 1024:
        return False
    # As a body again: placeholders as ids that say which ({walk} replaced whole have lines).
    body = _WALK.sub(b"", body)
    for index in range(3):
        body = body.replace(b"{%d}" % index, b"%d" % index * 40)
    lines = _pkt_lines(body)
    if len(lines) > 24:
        return False
    return all(len(line) == 4 or _PLAIN_LINES.fullmatch(line[4:]) for line in lines)


def _client_id(client: str) -> str:
    """Who sent a template, as kept on disk: a digest (client ids name users and addresses)."""
    return hashlib.sha256(client.encode()).hexdigest()[:16]


@dataclass
class Learnt:
    clients: set[str] = field(default_factory=set)
    seen: int = 0  # when last sent, in the order of all requests this server learnt from
    real: bool = False

    def rank(self) -> tuple[int, bool, int]:
        return (len(self.clients), self.real, self.seen)


class TemplateBook:
    """Every course's learnt templates, in memory and in `folder/<course>.json`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._courses: dict[str, dict[Template, Learnt]] = {}
        self._clock = 0
        self._dirty: set[str] = set()
        self._saving: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Future] = set()
        self._writer = ThreadPoolExecutor(1, "f2git-templates")  # one thread: writes land in order
        self._load()

    def _load(self) -> None:
        try:
            files = list(self.folder.glob("*.json"))
        except OSError:
            return
        for path in files:
            if path.name.startswith("."):  # written aside by a server that stopped
                path.unlink(missing_ok=True)
                continue
            try:
                if path.stat().st_size > 4 * MAX_TEMPLATES * MAX_TEMPLATE_BODY:
                    raise ValueError("larger than templates can be")
                learnt = {}
                for *fields, body, clients, seen in json.loads(path.read_text()):
                    template = (*map(str, fields), bytes.fromhex(body))
                    if len(fields) != 5 or len(template[5]) > MAX_TEMPLATE_BODY:
                        raise ValueError("not a template")
                    learnt[template] = Learnt(set(map(str, clients[:MAX_CLIENTS])), int(seen), real_shape(template))
                    self._clock = max(self._clock, int(seen))
                self._courses[path.stem] = learnt
                self._bound(path.stem)
            except (OSError, ValueError, TypeError, AttributeError):
                path.unlink(missing_ok=True)

    def learn(self, course: str, template: Template, client: str) -> None:
        learnt = self._courses.setdefault(course, {})
        self._clock += 1
        entry = learnt.get(template)
        if entry is None:
            entry = learnt[template] = Learnt(real=real_shape(template))
        changed = entry.seen == 0
        client = _client_id(client)
        if len(entry.clients) < MAX_CLIENTS and client not in entry.clients:
            entry.clients.add(client)
            changed = True
        entry.seen = self._clock
        if changed:  # a known template sent again by a known client is not worth a write
            self._bound(course, client)
            self._changed(course)

    def _bound(self, course: str, client: str | None = None) -> None:
        learnt = self._courses[course]
        if client is not None:  # one client's own templates never push out others'
            alone = sorted((template for template, entry in learnt.items() if entry.clients == {client}),
                           key=lambda template: learnt[template].rank())
            for template in alone[:max(0, len(alone) - PER_CLIENT)]:
                del learnt[template]
        while len(learnt) > MAX_TEMPLATES:
            del learnt[min(learnt, key=lambda template: learnt[template].rank())]

    def courses(self) -> set[str]:
        return set(self._courses)

    def ranked(self, course: str) -> list[Template]:
        """A course's templates, the one most worth building first."""
        learnt = self._courses.get(course, {})
        return sorted(learnt, key=lambda template: learnt[template].rank(), reverse=True)

    def forget_naming_objects(self, course: str) -> None:
        """Forget the course's templates that name an object id (after a history rewrite they may
        name retracted commits); the shapes of clones and fetches, which name none, are kept."""
        learnt = self._courses.get(course)
        if not learnt:
            return
        for template in [template for template in learnt if OID.search(template[5])]:
            del learnt[template]
        self._changed(course)

    def drop(self, course: str) -> None:
        """Forget a course's templates, also on disk (after any write of them still pending)."""
        self._courses.pop(course, None)
        self._dirty.discard(course)
        path = self.folder / f"{course}.json"
        try:
            self._submit(path.unlink, True)
        except RuntimeError:  # no loop running, or closed
            path.unlink(missing_ok=True)

    # -- writing, off the event loop ------------------------------------------------------------

    def _changed(self, course: str) -> None:
        self._dirty.add(course)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving (yet): written at the next change or at close
        if self._saving is None:
            self._saving = loop.call_later(SAVE_DELAY, self._save)

    def _save(self) -> None:
        self._saving = None
        files = {course: self._rows(course) for course in self._dirty}
        self._dirty.clear()
        self._submit(self._write, files)

    def _submit(self, function, *args) -> None:
        write = asyncio.get_running_loop().run_in_executor(self._writer, function, *args)
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    def _rows(self, course: str) -> list:
        learnt = self._courses.get(course, {})
        return [[*template[:5], template[5].hex(), sorted(entry.clients), entry.seen]
                for template, entry in learnt.items()]

    def _write(self, files: dict[str, list]) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for course, rows in files.items():
                aside = self.folder / f".{course}.{os.getpid()}.json"
                fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(fd, "w") as out:
                    json.dump(rows, out)
                os.replace(aside, self.folder / f"{course}.json")
        except OSError as error:
            log.info("learnt templates kept in memory only: %s", error)  # the data dir refuses writes

    async def close(self) -> None:
        if self._saving is not None:
            self._saving.cancel()
            self._save()
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
            self._writes = {write for write in self._writes if not write.done()}
        self._writer.shutdown(wait=False)
