"""Answers to git requests computed once and served to everyone who asks the same.

At lecture start hundreds of students send byte-identical requests: the same depth-1 clone
of the same commit, the same fetch from the previous snapshot. Each distinct request runs
`git http-backend` once; its whole answer (CGI head and pack) goes to a file that every
client asking the same streams from while it is written, and later gets as a file in large
chunks. Git never waits for a client: it writes to disk, and its backend slot is free as
soon as it is done, however slowly the clients read.

The key is everything that changes the answer's bytes: course, the served `main` commit,
method, action, query, content type, the Git-Protocol header and the decoded request body.
An answer is stored only if git succeeded, `main` did not move while it ran, and the request
is worth it (a body of at most MAX_STORED_BODY: real clones and fetches; a huge body is one
client's); entries of commits no longer served are dropped. An entry is one file named by the
key's digest (no request body is kept, on disk or in memory), written aside in this process's
own temp folder and renamed into place, its header carrying the answer's length: a reader takes
the length from the file it opened, so another server sharing the data dir may replace it
(two replicas, a rolling update), and a half-written or cut entry (crash, full disk) is never
served. What an entry costs (its disk blocks and its bookkeeping) counts against
`pack_cache_size`; servers sharing a data dir each keep to their share of it. Everything is private to the server's user (0700 folders, 0600 files).
(Design after GitLab
Gitaly's pack-objects cache and its streamcache: key by the exact input, one writer to a
file, many readers following it; f2git caches the whole upload-pack answer instead of
pack-objects' output, which leaves nothing for git to do on a hit.)

Small answers (ref advertisements, ls-refs, negotiation rounds) are also kept in memory.
Learnt request shapes, built ahead after each release: packtemplates.py.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from f2git.store import git_command

from .packtemplates import TemplateBook, fill, templates_of

log = logging.getLogger("f2git.packcache")

MAGIC = b"f2git-answer 2 "  # file header: MAGIC, the answer's length, "\n"; then the answer
MAX_HEADER = 64
MEMORY_ENTRY = 64 * 1024  # answers up to this size are also kept in memory…
MEMORY_BUDGET = 32 * 1024 * 1024  # …while all those together stay below this
MAX_ENTRIES = 20_000
MAX_STORED_BODY = 16 * 1024  # bytes of request body an answer worth storing was asked with
BLOCK = 4096  # a file takes whole blocks on disk
ENTRY_OVERHEAD = 1024  # an entry's index in memory and its directory entry
TEMPLATES = ".templates"  # beside the course folders; no course name starts with a dot
TEMP = ".tmp"  # one folder per running server below it, locked while it runs
SHARE_CHECK = 2.0  # s between counts of the servers sharing this cache (each keeps its share)
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
    """A stored answer: a file (and its bytes when small). No request body: the key is its digest."""

    key: str
    course: str
    commit: str
    path: Path
    size: int  # of the answer, without the file header
    data: bytes | None = None

    @property
    def cost(self) -> int:
        return entry_cost(self.size)


def entry_cost(size: int) -> int:
    """What an answer of `size` bytes takes from `pack_cache_size`: its file's blocks and its bookkeeping."""
    return -(-(_header_size(size) + size) // BLOCK) * BLOCK + ENTRY_OVERHEAD


class Torn(Exception):
    """A stored answer's file is not whole (cut short, not an answer)."""


def read_header(fd: int) -> tuple[int, int]:
    """(header size, answer size) of an opened entry file, checked against the file's size."""
    head = os.pread(fd, MAX_HEADER, 0)
    line, newline, _ = head.partition(b"\n")
    digits = line[len(MAGIC):]
    if not newline or not line.startswith(MAGIC) or not digits.isdigit() or len(digits) > 15:
        raise Torn("no answer header")
    size, header = int(digits), len(line) + 1
    if os.fstat(fd).st_size != header + size:
        raise Torn(f"{os.fstat(fd).st_size - header} bytes where the header says {size}")
    return header, size


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
            self.fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self.temp, self.on_disk = temp, True
        except OSError:
            # The data dir refuses writes (read-only, full): answer from memory, store nothing.
            self.fd = os.memfd_create("f2git-answer")
            self.temp, self.on_disk = temp, False
        self.written = 0
        self.generation = 0  # of its course when it started (PackCache.drop_course)
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
        self._notify()
        self.ended.set()

    def reader_fd(self) -> int:
        """A descriptor of the answer for one reader: its own, valid after the temp file goes."""
        return os.dup(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

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
        self.truncated: str | None = None
        if entry is not None and entry.data is None:
            # The length is the one in the file opened here, whichever server wrote it.
            self.fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                self.offset, size = read_header(self.fd)
            except (Torn, OSError):
                self.close()
                raise
            self.end, self.length = self.offset + size, size
        elif entry is not None:
            self.end = self.length = len(entry.data)
        elif computation is not None:
            self.fd = computation.reader_fd()

    @property
    def size(self) -> int | None:
        """The answer's length when it is stored (known before it is sent), else None."""
        return self.length if self.entry is not None else None

    @property
    def stored_file(self) -> bool:
        """A stored answer read from its file (what can go out with sendfile)."""
        return self.entry is not None and self.fd is not None

    @property
    def failure(self) -> str | None:
        return self.computation.failed if self.computation is not None else self.truncated

    def cut_short(self) -> None:
        """The stored file ended before its header said (another hand cut it): the answer
        ends here, as an error, instead of waiting for bytes that never come."""
        self.truncated = f"the stored answer ends {self.end - self.offset} bytes early"
        log.warning("pack cache: %s: %s", self.entry.path if self.entry else "?", self.truncated)

    async def read(self, size: int = CHUNK) -> bytes:
        """The next bytes of the answer; b"" at its end."""
        if self.entry is not None and self.entry.data is not None:
            chunk = self.entry.data[self.offset:self.offset + size]
        elif self.entry is not None:
            chunk = os.pread(self.fd, min(size, self.end - self.offset), self.offset)
            if not chunk and self.offset < self.end:
                self.cut_short()
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
    """Every stored and running answer, bounded by `limit` bytes (what entries take on disk and
    in bookkeeping; least recently used go first), kept in `root` across restarts."""

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
        self._snapshots: dict[str, tuple[str, frozenset[str]]] = {}
        self._generations: dict[str, int] = {}  # bumped by drop_course: older runs store nothing
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.size = self.memory = 0  # what entries cost (see Entry.cost), and bytes kept in memory too
        self.hits = self.misses = self.computed = self.prebuilt = 0
        self._lock: int | None = None
        self._servers, self._servers_counted = 1, float("-inf")
        self._temp = self.root / TEMP / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.templates = TemplateBook(self.root / TEMPLATES)
        self._load(set(courses))

    # -- start: reuse what a previous run stored --------------------------------------------

    def _load(self, courses: set[str]) -> None:
        (self.root / ".templates.json").unlink(missing_ok=True)  # f2git before 0.x kept all courses' in one
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)  # also when an older f2git made it readable to others
            (self.root / TEMP).mkdir(mode=0o700, exist_ok=True)
            self._remove_stale_temp()
            self._temp.mkdir(mode=0o700)
            # Read-only: flock needs no more, and a file open for writing would keep the
            # data dir's disk from being remounted read-only.
            self._lock = os.open(self._temp / "lock", os.O_RDONLY | os.O_CREAT, 0o600)
            # blocking: a new folder is only ever probed for a moment by another server (_running)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
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
                for path in commit_dir.iterdir():
                    entry = self._read_entry(course_dir.name, head, path)
                    if entry is not None:
                        found.append((path.stat().st_mtime, entry))
            if head is None:
                shutil.rmtree(course_dir, ignore_errors=True)
        for _, entry in sorted(found, key=lambda item: item[0]):
            self._add(entry)
        self._evict()
        for course in self.templates.courses() - courses:
            self.templates.drop(course)

    def _remove_stale_temp(self) -> None:
        """Unfinished answers of servers that stopped: their folder's lock is free. Servers
        still running on this data dir keep theirs."""
        for folder in (self.root / TEMP).iterdir():
            if not folder.is_dir() or folder.is_symlink():
                folder.unlink(missing_ok=True)  # f2git before issue 18 wrote here directly
                continue
            if _running(folder) is False:
                shutil.rmtree(folder, ignore_errors=True)

    def share(self) -> int:
        """What this server's entries may take: `limit` split between the servers running on
        this data dir now (they store into one folder; together they keep to `limit`)."""
        now = time.monotonic()
        if self._lock is not None and now - self._servers_counted >= SHARE_CHECK:
            try:
                others = sum(_running(folder) is True for folder in (self.root / TEMP).iterdir()
                             if folder != self._temp and folder.is_dir() and not folder.is_symlink())
            except OSError:
                others = self._servers - 1
            self._servers, self._servers_counted = 1 + others, now
        return self.limit // self._servers

    def _read_entry(self, course: str, commit: str, path: Path) -> Entry | None:
        """A stored entry, or None (and its file gone) when it is not whole."""
        try:
            if not re.fullmatch(r"[0-9a-f]{64}", path.name):
                raise Torn("not an answer")  # e.g. the .json beside each answer f2git kept before
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                _, size = read_header(fd)
            finally:
                os.close(fd)
            return self._with_data(Entry(path.name, course, commit, path, size))
        except (OSError, Torn):
            path.unlink(missing_ok=True)
            return None

    def _with_data(self, entry: Entry) -> Entry:
        if entry.size <= MEMORY_ENTRY and self.memory + entry.size <= MEMORY_BUDGET:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                header, size = read_header(fd)
                entry.data = os.pread(fd, size, header)
            finally:
                os.close(fd)
            entry.size = len(entry.data)
            self.memory += entry.size
        return entry

    # -- serving --------------------------------------------------------------------------------

    def head(self, course: str) -> str | None:
        """The served `main` of `course`; a change seen here drops the old answers."""
        head = read_main(self.repos_dir / f"{course}.git")
        if head is not None and self._heads.get(course) != head:
            self._new_head(course, head)
        return head

    def open(self, request: GitRequest, client: str = "") -> Reader:
        """A reader of the answer to `request`: stored, being computed, or computed now.
        `client` (who asks: a user, a token or an address) counts towards what is built ahead."""
        self._learn(request, client)
        entry = self._entries.get(request.key)
        if entry is not None:
            self._entries.move_to_end(request.key)
            try:
                reader = Reader(entry=entry)
                self.hits += 1
                return reader
            except (OSError, Torn) as error:  # removed or cut behind our back: compute again
                if not isinstance(error, FileNotFoundError):
                    log.warning("pack cache: %s is not whole (%s): computed again", entry.path, error)
                self._drop(request.key)
        computation = self._running.get(request.key)
        if computation is None:
            self.misses += 1
            computation = self._start(request)
        else:
            self.hits += 1
        reader = Reader(computation=computation)
        if computation.done:  # never started (f2git is stopping): nothing else reads it
            computation.close()
        return reader

    def _start(self, request: GitRequest) -> Computation:
        computation = Computation(request, self._temp / request.key)
        computation.generation = self._generations.get(request.course, 0)
        if self._closed:
            computation.finish("f2git is stopping")
            if computation.on_disk:
                computation.temp.unlink(missing_ok=True)
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
                if failed is None and self._worth_storing(computation):
                    self._store(computation)
            except OSError as error:
                log.warning("course %s: an answer was served but not stored: %s", request.course, error)
            finally:
                if computation.on_disk:
                    computation.temp.unlink(missing_ok=True)
                computation.close()

    def _worth_storing(self, computation: Computation) -> bool:
        request = computation.request
        return computation.on_disk and len(request.body) <= MAX_STORED_BODY \
            and computation.generation == self._generations.get(request.course, 0) \
            and entry_cost(computation.written) <= self.share() \
            and self.head(request.course) == request.commit and _succeeded(computation.fd)

    def _store(self, computation: Computation) -> None:
        """Write the entry aside (header + answer) and rename it into place: a server reading
        the one it replaces (another process on this data dir) keeps reading that one."""
        request, size = computation.request, computation.written
        folder = self.root / request.course / request.commit
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        aside = self._temp / f"{request.key}.entry"
        out = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(out, _header(size))
            copied = 0
            while copied < size:
                sent = os.copy_file_range(computation.fd, out, size - copied, copied) \
                    if hasattr(os, "copy_file_range") else 0
                if sent <= 0:
                    chunk = os.pread(computation.fd, min(CHUNK, size - copied), copied)
                    if not chunk:
                        raise OSError(f"the answer being stored ended at {copied} of {size} bytes")
                    sent = os.write(out, chunk)
                copied += sent
        finally:
            os.close(out)
        final = folder / request.key
        os.replace(aside, final)
        self._add(self._with_data(Entry(request.key, request.course, request.commit, final, size)))
        self._evict()

    # -- size and lifetime ----------------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        self._drop(entry.key, remove=False)
        self._entries[entry.key] = entry
        self.size += entry.cost

    def _drop(self, key: str, remove: bool = True) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.size -= entry.cost
        if entry.data is not None:
            self.memory -= entry.size
        if remove:  # readers that opened it keep their descriptor
            entry.path.unlink(missing_ok=True)

    def _evict(self) -> None:
        share = self.share()
        while self._entries and (self.size > share or len(self._entries) > MAX_ENTRIES):
            self._drop(next(iter(self._entries)))

    def _new_head(self, course: str, head: str) -> None:
        """`main` moved: answers for other commits are never asked for again."""
        previous = self._heads.get(course)
        self._heads[course] = head
        for key in [key for key, entry in self._entries.items() if entry.course == course and entry.commit != head]:
            self._drop(key)
        course_dir = self.root / course
        if course_dir.is_dir():
            for commit_dir in course_dir.iterdir():
                if commit_dir.name != head:
                    shutil.rmtree(commit_dir, ignore_errors=True)
        if previous is not None:
            log.info("course %s: new snapshot %s; building the answers clicks will ask for", course, head[:12])
        self._spawn(self._prebuild(course, head))

    def drop_course(self, course: str) -> None:
        """Forget every stored answer of `course` and the learnt templates that name its commits,
        on disk and in memory (after a history rewrite nothing of the old history may be served,
        also after a restart); answers being computed now are served to who asked, never stored.
        Then build ahead for the `main` served now, from the templates that name no commit."""
        self._generations[course] = self._generations.get(course, 0) + 1
        for key in [key for key, entry in self._entries.items() if entry.course == course]:
            self._drop(key)
        shutil.rmtree(self.root / course, ignore_errors=True)
        self.templates.forget_naming_objects(course)
        for known in (self._heads, self._history, self._snapshots):
            known.pop(course, None)
        self.head(course)

    # -- ready before the click (the templates: packtemplates.py) -------------------------------

    def _learn(self, request: GitRequest, client: str) -> None:
        snapshots = self._history.get(request.course)
        if not snapshots or snapshots[0] != request.commit:
            return
        for body in templates_of(request.body, snapshots):
            self.templates.learn(request.course, (request.method, request.action, request.query,
                                                  request.content_type, request.protocol, body), client)

    async def _prebuild(self, course: str, head: str) -> None:
        snapshots = await self._read_history(course, head, count=0)
        if not snapshots or self._heads.get(course) != head:
            return
        self._history[course] = snapshots
        self._snapshots[course] = (head, frozenset(snapshots))
        for method, action, query, content_type, protocol, template in self.templates.ranked(course):
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

    def snapshot_published(self, course: str) -> None:
        """Called after a sync: look at `main` now, and build ahead if it moved."""
        self.head(course)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.templates.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        shutil.rmtree(self._temp, ignore_errors=True)

    @property
    def idle(self) -> bool:
        """Nothing is being computed, prebuilding included."""
        return not self._running and all(task.done() for task in self._tasks)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self.size, "running": len(self._running),
                "hits": self.hits, "misses": self.misses, "computed": self.computed, "prebuilt": self.prebuilt}



def _running(folder: Path) -> bool | None:
    """Whether the server that owns temp `folder` runs (its lock is held); None: not ours to judge."""
    try:
        lock = os.open(folder / "lock", os.O_RDONLY)
    except FileNotFoundError:
        return False  # never locked: its server died at once
    except OSError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:  # held: that server is running
        return True
    finally:
        os.close(lock)


def _succeeded(fd: int) -> bool:
    """Whether a CGI answer is a 200 (http-backend exits 0 after refusing a request, too)."""
    start = os.pread(fd, 65536, 0)
    if b"\r\n\r\n" not in start:
        return False
    for line in start.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"status":
            return value.strip().startswith(b"200")
    return True
