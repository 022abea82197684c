"""Answers to git requests computed once and served to everyone who asks the same.

At lecture start hundreds of students send byte-identical requests: the same depth-1 clone
of the same commit, the same fetch from the previous snapshot. Each distinct request runs
`git http-backend` once; its whole answer (CGI head and pack) goes to a file that every
client asking the same streams from while it is written, and later gets as a file in large
chunks. Git never waits for a client: it writes to disk, and its backend slot is free as
soon as it is done, however slowly the clients read.

The key is everything that changes the answer's bytes: course, the served `main` commit,
method, action, query, content type, the Git-Protocol header and the decoded request body.
An answer is stored only if git succeeded and `main` did not move while it ran; entries of
commits no longer served are dropped. Files are written aside and renamed, and carry their
length, so a half-written entry (crash, full disk) is never served. (Design after GitLab
Gitaly's pack-objects cache and its streamcache: key by the exact input, one writer to a
file, many readers following it; f2git caches the whole upload-pack answer instead of
pack-objects' output, which leaves nothing for git to do on a hit.)

Small answers (ref advertisements, ls-refs, negotiation rounds) are also kept in memory.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from f2git.store import git_command

if TYPE_CHECKING:
    from .git import Backends

log = logging.getLogger("f2git.packcache")

MAGIC = b"f2git-answer 1 "  # file header: MAGIC, the answer's length, "\n"; then the answer
MEMORY_ENTRY = 64 * 1024  # answers up to this size are also kept in memory…
MEMORY_BUDGET = 32 * 1024 * 1024  # …while all those together stay below this
MAX_ENTRIES = 20_000
MAX_TEMPLATES = 32  # per course
TEMPLATES = ".templates.json"  # beside the course folders; no course name starts with a dot
CHUNK = 256 * 1024
OID = re.compile(rb"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


@dataclass(frozen=True)
class GitRequest:
    """What decides the answer's bytes: the cache key, and what the backend is run with."""

    course: str
    commit: str
    method: str
    action: str
    query: str
    content_type: str
    protocol: str  # the Git-Protocol header passed to git ("" for v0)
    body: bytes  # decoded
    refs: str = ""  # the served refs beside main (pins), for answers that advertise refs

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.course, self.commit, self.method, self.action, self.query, self.content_type,
                     self.protocol, self.refs):
            digest.update(part.encode() + b"\0")
        digest.update(self.body)
        return digest.hexdigest()


@dataclass
class Entry:
    """A stored answer: a file (and its bytes when small)."""

    request: GitRequest
    path: Path
    size: int  # of the answer, without the file header
    data: bytes | None = None


def read_main(repo: Path) -> str | None:
    """The commit `refs/heads/main` names, read from the ref files (no git process): a request
    must know which snapshot it is answered from, and this is asked on every request."""
    try:
        loose = (repo / "refs" / "heads" / "main").read_bytes().strip()
        return loose.decode() if OID.fullmatch(loose) else None
    except FileNotFoundError:
        pass
    try:
        for line in (repo / "packed-refs").read_bytes().splitlines():
            oid, _, name = line.partition(b" ")
            if name == b"refs/heads/main" and OID.fullmatch(oid):
                return oid.decode()
    except FileNotFoundError:
        pass
    return None


class Computation:
    """One backend run whose answer goes to a temp file that readers follow as it grows."""

    def __init__(self, request: GitRequest, temp: Path):
        self.request = request
        try:
            self.fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self.temp, self.on_disk = temp, True
        except OSError:
            # The data dir refuses writes (read-only, full): answer from memory, store nothing.
            self.fd = os.memfd_create("f2git-answer")
            self.temp, self.on_disk = Path(f"/proc/self/fd/{self.fd}"), False
        self.written = 0
        self.done = False
        self.failed: str | None = None  # why, when git failed before its answer was complete
        self._grown = asyncio.Event()
        self.ended = asyncio.Event()

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            count = os.write(self.fd, view)
            view = view[count:]
        self.written += len(chunk)
        self._notify()

    def finish(self, failed: str | None) -> None:
        self.done, self.failed = True, failed
        os.close(self.fd)
        self._notify()
        self.ended.set()

    def _notify(self) -> None:
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def grown(self, seen: int) -> None:
        while not self.done and self.written <= seen:
            await self._grown.wait()


class Reader:
    """One client's view of an answer: a stored entry, or a computation still running."""

    def __init__(self, entry: Entry | None = None, computation: Computation | None = None):
        self.entry, self.computation = entry, computation
        self.offset = 0
        self.fd: int | None = None
        if entry is not None and entry.data is None:
            self.fd = os.open(entry.path, os.O_RDONLY)
            self.offset = _header_size(entry.size)
            self.end = self.offset + entry.size
        elif computation is not None:
            # Its own descriptor, opened now: the temp file is renamed or removed later.
            self.fd = os.open(computation.temp, os.O_RDONLY)

    @property
    def stored_file(self) -> bool:
        """A stored answer read from its file (what can go out with sendfile)."""
        return self.entry is not None and self.fd is not None

    @property
    def failure(self) -> str | None:
        return self.computation.failed if self.computation is not None else None

    async def read(self, size: int = CHUNK) -> bytes:
        """The next bytes of the answer; b"" at its end."""
        if self.entry is not None and self.entry.data is not None:
            chunk = self.entry.data[self.offset:self.offset + size]
        elif self.entry is not None:
            chunk = os.pread(self.fd, min(size, self.end - self.offset), self.offset)
        else:
            computation = self.computation
            await computation.grown(self.offset)
            chunk = os.pread(self.fd, min(size, computation.written - self.offset), self.offset) \
                if computation.written > self.offset else b""
        self.offset += len(chunk)
        return chunk

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _header(size: int) -> bytes:
    return MAGIC + b"%d\n" % size


def _header_size(size: int) -> int:
    return len(_header(size))


Run = Callable[[GitRequest, Callable[[bytes], None]], Awaitable[str | None]]


class PackCache:
    """Every stored and running answer, bounded by `limit` bytes on disk (least recently used
    go first), kept in `root` across restarts."""

    # course -> GitRequest.refs of its ref advertisements now (the server sets it: pins)
    refs_of: Callable[[str], str] = staticmethod(lambda course: "")

    def __init__(self, root: Path, repos_dir: Path, courses: list[str], limit: int, run: Run):
        """`run(request, write)` runs git for `request`, passes its output to `write` and
        returns None on success or why it failed."""
        self.root = Path(root)
        self.repos_dir = Path(repos_dir)
        self.limit = limit
        self._run = run
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._running: dict[str, Computation] = {}
        self._heads: dict[str, str] = {}
        self._history: dict[str, list[str]] = {}  # newest first: main and every snapshot before it
        self._templates: dict[str, OrderedDict[tuple, None]] = {}  # per course, least recently seen first
        self._snapshots: dict[str, tuple[str, frozenset[str]]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.size = self.memory = 0  # bytes stored on disk, and kept in memory too
        self.hits = self.misses = self.computed = self.prebuilt = 0
        self._temp = self.root / ".tmp"
        self._load(set(courses))

    # -- start: reuse what a previous run stored --------------------------------------------

    def _load(self, courses: set[str]) -> None:
        shutil.rmtree(self._temp, ignore_errors=True)  # unfinished answers of a crashed run
        self._load_templates()
        try:
            self._temp.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            log.warning("pack cache %s is not writable (%s): answers are computed, not stored", self.root, error)
            return
        found = []
        for course_dir in self.root.iterdir():
            if course_dir.name.startswith("."):
                continue
            head = read_main(self.repos_dir / f"{course_dir.name}.git") if course_dir.name in courses else None
            for commit_dir in course_dir.iterdir() if course_dir.is_dir() else []:
                if commit_dir.name != head:
                    shutil.rmtree(commit_dir, ignore_errors=True)
                    continue
                for path in commit_dir.glob("*.json"):
                    entry = self._read_entry(path)
                    if entry is not None:
                        found.append((path.stat().st_mtime, entry))
            if head is None:
                shutil.rmtree(course_dir, ignore_errors=True)
        for _, entry in sorted(found, key=lambda item: item[0]):
            self._add(entry)
        self._evict()

    def _read_entry(self, meta: Path) -> Entry | None:
        """A stored entry, or None (and its files gone) when it is not whole."""
        answer = meta.with_suffix("")
        try:
            info = json.loads(meta.read_text())
            request = GitRequest(**{**info, "body": bytes.fromhex(info["body"])})
            with open(answer, "rb") as stored:
                header = stored.readline(64)
                size = int(header[len(MAGIC):]) if header.startswith(MAGIC) else -1
                whole = header == _header(size) and os.fstat(stored.fileno()).st_size == len(header) + size
            if not whole or request.key != answer.name:
                raise ValueError("not whole")
            return self._with_data(Entry(request, answer, size))
        except (OSError, ValueError, TypeError, KeyError):
            meta.unlink(missing_ok=True)
            answer.unlink(missing_ok=True)
            return None

    def _with_data(self, entry: Entry) -> Entry:
        if entry.size <= MEMORY_ENTRY and self.memory + entry.size <= MEMORY_BUDGET:
            with open(entry.path, "rb") as stored:
                stored.seek(_header_size(entry.size))
                entry.data = stored.read(entry.size)
            self.memory += entry.size
        return entry

    # -- serving --------------------------------------------------------------------------------

    def head(self, course: str) -> str | None:
        """The served `main` of `course`; a change seen here drops the old answers."""
        head = read_main(self.repos_dir / f"{course}.git")
        if head is not None and self._heads.get(course) != head:
            self._new_head(course, head)
        return head

    def open(self, request: GitRequest) -> Reader:
        """A reader of the answer to `request`: stored, being computed, or computed now."""
        self._learn(request)
        entry = self._entries.get(request.key)
        if entry is not None:
            self._entries.move_to_end(request.key)
            self.hits += 1
            try:
                return Reader(entry=entry)
            except FileNotFoundError:  # removed behind our back: compute again
                self._drop(request.key)
        computation = self._running.get(request.key)
        if computation is None:
            self.misses += 1
            computation = self._start(request)
        else:
            self.hits += 1
        return Reader(computation=computation)

    def _start(self, request: GitRequest) -> Computation:
        temp = self._temp / f"{request.key}.{os.getpid()}"
        computation = Computation(request, temp)
        if self._closed:
            computation.finish("f2git is stopping")  # its empty file goes at the next start
            return computation
        self._running[request.key] = computation
        self._spawn(self._compute(computation))
        return computation

    def _spawn(self, coroutine) -> None:
        if self._closed:
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compute(self, computation: Computation) -> None:
        request = computation.request
        failed = "f2git is stopping"
        try:
            failed = await self._run(request, computation.write)
        except OSError as error:  # e.g. the disk is full
            failed = f"could not store git's answer: {error.strerror}"
            log.warning("course %s: %s", request.course, failed)
        finally:
            computation.finish(failed)
            self._running.pop(request.key, None)
            self.computed += 1
            try:
                if computation.on_disk and failed is None and self.head(request.course) == request.commit and \
                        computation.written + _header_size(computation.written) <= self.limit and \
                        _succeeded(computation.temp):
                    self._store(computation)
            except OSError as error:
                log.warning("course %s: an answer was served but not stored: %s", request.course, error)
            finally:
                if computation.on_disk:
                    computation.temp.unlink(missing_ok=True)

    def _store(self, computation: Computation) -> None:
        """Write the entry aside (header + answer) and rename it into place."""
        request, size = computation.request, computation.written
        folder = self.root / request.course / request.commit
        folder.mkdir(parents=True, exist_ok=True)
        aside = self._temp / f"{request.key}.entry"
        with open(aside, "wb") as out, open(computation.temp, "rb") as answer:
            out.write(_header(size))
            shutil.copyfileobj(answer, out, 1024 * 1024)
        meta = {**request.__dict__, "body": request.body.hex()}
        final = folder / request.key
        (self._temp / f"{request.key}.json").write_text(json.dumps(meta))
        os.replace(aside, final)
        os.replace(self._temp / f"{request.key}.json", final.with_suffix(".json"))
        self._add(self._with_data(Entry(request, final, size)))
        self._evict()

    # -- size and lifetime ----------------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        self._drop(entry.request.key, remove=False)
        self._entries[entry.request.key] = entry
        self.size += entry.size

    def _drop(self, key: str, remove: bool = True) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.size -= entry.size
        if entry.data is not None:
            self.memory -= entry.size
        if remove:  # readers that opened it keep their descriptor
            entry.path.unlink(missing_ok=True)
            entry.path.with_suffix(".json").unlink(missing_ok=True)

    def _evict(self) -> None:
        while self._entries and (self.size > self.limit or len(self._entries) > MAX_ENTRIES):
            self._drop(next(iter(self._entries)))

    def _new_head(self, course: str, head: str) -> None:
        """`main` moved: answers for other commits are never asked for again."""
        previous = self._heads.get(course)
        self._heads[course] = head
        for key in [key for key, entry in self._entries.items()
                    if entry.request.course == course and entry.request.commit != head]:
            self._drop(key)
        course_dir = self.root / course
        if course_dir.is_dir():
            for commit_dir in course_dir.iterdir():
                if commit_dir.name != head:
                    shutil.rmtree(commit_dir, ignore_errors=True)
        if previous is not None:
            log.info("course %s: new snapshot %s; building the answers clicks will ask for", course, head[:12])
        self._spawn(self._prebuild(course, head))

    # -- ready before the click -----------------------------------------------------------------
    # The request bodies real clients send are learnt from the requests they made. In a body
    # a `want` or `have` of `main` or of the two snapshots before it becomes a placeholder;
    # a `shallow` line (where the student's shallow clone began) stays as it is. When a
    # snapshot is published, each template is filled in with the new commits and answered
    # before the first click asks: the student who cloned at snapshot 1 and fetched at 2
    # sends the same body, with newer commits, when fetching 4 from 3.

    def _learn(self, request: GitRequest) -> None:
        snapshots = self._history.get(request.course)
        if not snapshots or snapshots[0] != request.commit:
            return
        templates = self._templates.setdefault(request.course, OrderedDict())
        for body in templates_of(request.body, snapshots):
            template = (request.method, request.action, request.query, request.content_type, request.protocol, body)
            if template in templates:
                templates.move_to_end(template)
                continue
            templates[template] = None
            while len(templates) > MAX_TEMPLATES:
                templates.popitem(last=False)
            self._save_templates()

    def _save_templates(self) -> None:
        aside = self._temp / "templates.json"
        try:
            aside.write_text(json.dumps({course: [[*template[:5], template[5].hex()] for template in templates]
                                         for course, templates in self._templates.items()}))
            os.replace(aside, self.root / TEMPLATES)
        except OSError:
            pass  # kept in memory; the data dir refuses writes

    def _load_templates(self) -> None:
        try:
            for course, templates in json.loads((self.root / TEMPLATES).read_text()).items():
                self._templates[course] = OrderedDict(
                    ((*fields, bytes.fromhex(body)), None) for *fields, body in templates[-MAX_TEMPLATES:])
        except (OSError, ValueError, TypeError, AttributeError):
            self._templates.clear()

    async def _prebuild(self, course: str, head: str) -> None:
        snapshots = await self._read_history(course, head, count=0)
        if not snapshots or self._heads.get(course) != head:
            return
        self._history[course] = snapshots
        self._snapshots[course] = (head, frozenset(snapshots))
        for method, action, query, content_type, protocol, template in list(self._templates.get(course, ())):
            body = fill(template, snapshots)
            if body is None:
                continue  # e.g. a fetch from a snapshot this course does not have
            lists_refs = method == "GET" or body.startswith(b"0014command=ls-refs")
            request = GitRequest(course, head, method, action, query, content_type, protocol, body,
                                 self.refs_of(course) if lists_refs else "")
            if request.key in self._entries or request.key in self._running:
                continue
            self.prebuilt += 1
            await self._start(request).ended.wait()  # one at a time: clicks share the slots

    async def _read_history(self, course: str, head: str, count: int = 3) -> list[str]:
        """`head` and the snapshots before it, newest first (all of them with count 0)."""
        process = await asyncio.create_subprocess_exec(
            *git_command("--git-dir", str(self.repos_dir / f"{course}.git"), "rev-list", "--first-parent",
                         *(["-n", str(count)] if count else []), head),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await process.communicate()
        finally:
            if process.returncode is None:  # cancelled: the server is closing; leave no git behind
                process.kill()
                await process.wait()
        return out.decode().split() if process.returncode == 0 else []

    async def snapshots(self, course: str, head: str) -> frozenset[str]:
        """Every snapshot `main` has served up to `head`: the only commits a client may want."""
        known = self._snapshots.get(course)
        if known is None or known[0] != head:
            known = (head, frozenset(await self._read_history(course, head, count=0)))
            self._snapshots[course] = known
        return known[1]

    def drop_course(self, course: str) -> None:
        """Forget every answer of `course`, on disk and in memory, and the request templates that
        name its commits (after a history rewrite: they may hold retracted bytes); then build
        ahead for the `main` served now."""
        for key in [key for key, entry in self._entries.items() if entry.request.course == course]:
            self._drop(key)
        shutil.rmtree(self.root / course, ignore_errors=True)
        templates = self._templates.get(course)
        if templates:
            for template in [template for template in templates if OID.search(template[5])]:
                del templates[template]
            self._save_templates()
        for known in (self._heads, self._history, self._snapshots):
            known.pop(course, None)
        self.head(course)

    def snapshot_published(self, course: str) -> None:
        """Called after a sync: look at `main` now, and build ahead if it moved."""
        self.head(course)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def idle(self) -> bool:
        """Nothing is being computed, prebuilding included."""
        return not self._running and all(task.done() for task in self._tasks)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self.size, "running": len(self._running),
                "hits": self.hits, "misses": self.misses, "computed": self.computed, "prebuilt": self.prebuilt}



def _succeeded(answer: Path) -> bool:
    """Whether a CGI answer is a 200 (http-backend exits 0 after refusing a request, too)."""
    with open(answer, "rb") as stored:
        start = stored.read(65536)
    if b"\r\n\r\n" not in start:
        return False
    for line in start.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"status":
            return value.strip().startswith(b"200")
    return True


def _pkt_lines(body: bytes) -> list[bytes]:
    lines, at = [], 0
    while at < len(body):
        length = max(int(body[at:at + 4], 16), 4)  # checked pkt-lines; below 4: flush, delim
        lines.append(body[at:at + length])
        at += length
    return lines


def templates_of(body: bytes, snapshots: list[str]) -> list[bytes]:
    """The templates a request body teaches (see PackCache._learn), none when it names an
    object other students would not have (their own commits).

    In want and have lines, `main` and the two snapshots before it become {0}, {1}, {2};
    `shallow` lines stay as they are (where that cohort's shallow clones begin), or become
    relative too (students who cloned the snapshot before); and haves that walk back from
    {1} to the shallow boundary become {walk:<boundary>}, which is how the history students
    fetch with grows from one snapshot to the next."""
    if not snapshots:
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
