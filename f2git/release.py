"""Release control on a course repo: take back files released by mistake (retract).

A retract rewrites `main` from the first snapshot that holds one of the paths: earlier
commits keep their ids (students' clones still share them), later ones get new ids without
the paths. Then every object only the old history reached is deleted (reflogs expired,
everything repacked, loose objects pruned): git serves no object it does not have, however a
client asks (protocol v2 serves any object named by id). The old -> new commit ids are kept
in `<data_dir>/rewrites/<course>.json`, so pullhook can bridge a student's clone to the new
history. Runs under the course lock, so no sync interleaves with it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from filelock import Timeout

from connectors._redact import redact

from . import backup, holds, mirror, status
from .paths import UnsafePath, safe_path
from .snapshot import course_lock
from .store import BIG_FILE, BRANCH, INCOMING, CourseRepo, GitError, git_command, git_env
from .syncstate import StateStore

if TYPE_CHECKING:
    from .config import Config, CourseConfig

log = logging.getLogger("f2git.release")

MAX_REASON = 500  # characters of a retract's reason kept in the status
MAX_PATHS = 1000  # paths one retract may name


class ReleaseError(Exception):
    """A release-control request was refused or failed; the message says why, safe to show.
    `status`: the HTTP status that fits (400 bad request, 404 nothing to act on, 409 busy)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Retraction:
    course: str
    paths: list[str]
    reason: str
    who: str
    time: float
    old_head: str
    commit: str  # the new main
    rewritten: int  # commits that got new ids
    first: str  # the first old commit that held a path
    root_rewritten: bool  # the leak was in the root commit: students' clones share no commit with the new history
    held: list[str] = field(default_factory=list)  # files the source still offers, held back at the next syncs
    backup_error: str | None = None
    mirror_error: str | None = None

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self)}


def clean_paths(paths: list[str]) -> list[str]:
    """The paths as they are named in the repo; a name that cannot be in any snapshot is refused."""
    if not paths:
        raise ReleaseError("name at least one file or folder to retract")
    if len(paths) > MAX_PATHS:
        raise ReleaseError(f"at most {MAX_PATHS} paths per retract")
    cleaned = []
    for raw in paths:
        try:
            cleaned.append(safe_path(raw.rstrip("/") if isinstance(raw, str) else raw))
        except UnsafePath as error:
            raise ReleaseError(f"{str(raw)[:200]!r} is not a path inside the course: {error}") from None
    return sorted(set(cleaned))


def clean_reason(reason: str | None) -> str:
    return " ".join(str(reason or "").split())[:MAX_REASON]


def matches(path: str, targets: list[str]) -> bool:
    """`path` is one of `targets` or inside one of them (a folder)."""
    return any(path == target or path.startswith(target + "/") for target in targets)


# -- the rewrite --------------------------------------------------------------------------------

_QUOTED = re.compile(rb'\\(?:([0-7]{3})|(.))')
_ESCAPES = {b"n": b"\n", b"t": b"\t", b'"': b'"', b"\\": b"\\", b"a": b"\a", b"b": b"\b", b"f": b"\f",
            b"r": b"\r", b"v": b"\v"}


def _path_of(raw: bytes) -> str:
    """A path as fast-export writes it: plain, or C-quoted."""
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = _QUOTED.sub(lambda m: bytes([int(m[1], 8)]) if m[1] else _ESCAPES.get(m[2], m[2]), raw[1:-1])
    return raw.decode("utf-8", "surrogateescape")


def _filter_message(message: bytes, targets: list[str]) -> bytes:
    """A snapshot's message lists changed files, one per line: the retracted names go too."""
    lines = message.decode("utf-8", "surrogateescape").split("\n")
    kept = [line for line in lines if not (line.startswith("  ") and matches(line.strip(), targets))]
    return "\n".join(kept).encode("utf-8", "surrogateescape")


def rewrite_stream(exported: bytes, targets: list[str], ref: str) -> tuple[bytes, dict[str, str]]:
    """fast-export's stream without the paths: commits go to `ref`, file changes and message
    lines naming a path are dropped. Returns the stream and mark -> original commit id."""
    out: list[bytes] = []
    originals: dict[str, str] = {}
    mark = None
    at = 0
    while at < len(exported):
        end = exported.index(b"\n", at)
        line = exported[at:end]
        at = end + 1
        if line.startswith(b"data "):
            size = int(line[5:])
            body = exported[at:at + size]
            at += size
            body = _filter_message(body, targets)
            out.append(b"data %d\n" % len(body) + body)
            continue
        if line.startswith((b"commit ", b"reset ")):
            line = line.split(b" ", 1)[0] + b" " + ref.encode()
        elif line.startswith(b"mark "):
            mark = line[5:].decode()
        elif line.startswith(b"original-oid "):
            if mark is not None:
                originals[mark] = line[13:].decode()
            continue
        elif line.startswith(b"M "):
            if matches(_path_of(line.split(b" ", 3)[3]), targets):
                continue
        elif line.startswith(b"D "):
            if matches(_path_of(line[2:]), targets):
                continue
        elif line.startswith((b"C ", b"R ")):
            raise GitError("unexpected copy or rename in the exported history")
        out.append(line + b"\n")
    return b"".join(out), originals


def _run(repo: CourseRepo, *args: str, input: bytes | None = None) -> bytes:
    process = subprocess.run(git_command("--git-dir", str(repo.path), *args), input=input,
                             capture_output=True, env=git_env())
    if process.returncode != 0:
        said = process.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {said[-1] if said else process.returncode}")
    return process.stdout


def rewrite(repo: CourseRepo, head: str, targets: list[str]) -> tuple[dict[str, str], str]:
    """Write the history of `head` without `targets` (objects only, no ref moves).
    Returns old -> new id of every rewritten commit, and the first old commit rewritten."""
    touching = repo.git("--literal-pathspecs", "rev-list", "--first-parent", "--reverse", head, "--", *targets).split()
    if not touching:
        raise ReleaseError(f"no snapshot holds {', '.join(targets)}", 404)
    first = touching[0]
    parents = repo.git("rev-list", "--parents", "-n", "1", first).split()[1:]
    span = f"{parents[0]}..{head}" if parents else head
    exported = _run(repo, "fast-export", "--no-data", "--show-original-ids", "--reference-excluded-parents",
                    "--signed-tags=strip", "--use-done-feature", span)  # no -M: no renames guessed
    scratch = f"{INCOMING}/{uuid.uuid4().hex[:12]}/retract"
    stream, originals = rewrite_stream(exported, targets, scratch)
    fd, marks = tempfile.mkstemp(prefix="f2git-marks-", dir=repo.path)
    os.close(fd)
    try:
        _run(repo, "-c", "fastimport.unpackLimit=0", "-c", f"core.bigFileThreshold={BIG_FILE}", "fast-import",
             "--quiet", f"--export-marks={marks}", input=stream)
        new_ids = dict(line.split() for line in Path(marks).read_text().splitlines())
    finally:
        Path(marks).unlink(missing_ok=True)
    mapping = {originals[mark]: new for mark, new in new_ids.items() if mark in originals}
    repo.git("update-ref", "-d", scratch)
    if head not in mapping:
        raise GitError("the rewritten history does not reach the current snapshot")
    return mapping, first


def purge(path: Path) -> None:
    """Delete every object no ref reaches: the rewritten history's bytes must be gone."""
    repo = CourseRepo(path)
    repo.git("reflog", "expire", "--expire=now", "--all")
    for keep in (path / "objects" / "pack").glob("*.keep"):
        keep.unlink(missing_ok=True)  # a kept pack (big files) would keep old objects too
    repo.git("-c", f"core.bigFileThreshold={BIG_FILE}", "repack", "-a", "-d", "-q")
    repo.git("prune", "--expire=now")
    for leftover in ("objects/info/commit-graph", "objects/info/commit-graphs"):
        shutil.rmtree(path / leftover, ignore_errors=True) if (path / leftover).is_dir() \
            else (path / leftover).unlink(missing_ok=True)


# -- what a rewrite leaves behind: the mapping, the state, the status, copies ------------------

def rewrites_path(config: "Config", name: str) -> Path:
    return config.server.data_dir / "rewrites" / f"{name}.json"


def rewrites(config: "Config", name: str) -> dict[str, str]:
    """old commit id -> the commit that replaced it, over every retract of the course."""
    try:
        data = json.loads(rewrites_path(config, name).read_text())
        return {str(k): str(v) for k, v in data.get("map", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def rewritten(config: "Config", name: str) -> bool:
    """Whether a retract ever rewrote the course's history (one stat, no read)."""
    return rewrites_path(config, name).exists()


def rewrite_info(config: "Config", name: str) -> dict:
    """The whole record: `map`, `last` (time of the last retract), `root` (a root was rewritten),
    `since` (when the first snapshot the last retract rewrote was made: students whose copy began
    from then until `last` cannot merge the new history without pullhook)."""
    try:
        data = json.loads(rewrites_path(config, name).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_rewrites(config: "Config", name: str, mapping: dict[str, str], root: bool, since: float) -> None:
    """Add one retract's mapping; earlier ones are carried forward to the newest ids."""
    known = rewrite_info(config, name)
    combined = {old: mapping.get(new, new) for old, new in rewrites(config, name).items()}
    combined.update(mapping)
    target = rewrites_path(config, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump({"course": name, "map": combined, "last": time.time(), "root": root or bool(known.get("root")),
                   "since": since}, handle)
    os.replace(scratch, target)


def _copy_to_backup(config: "Config", name: str, repo: CourseRepo) -> str | None:
    target = backup.backup_path(config, name)
    if target is None or not (target / "HEAD").is_file():
        return None
    try:
        # fetched into the backup: it refuses non-fast-forward pushes (receive.denyNonFastForwards)
        _run(CourseRepo(target), "fetch", "--quiet", "--no-tags", str(repo.path), f"+{BRANCH}:{BRANCH}")
        purge(target)
    except GitError as error:
        log.warning("%s: the backup %s could not be rewritten: %s", name, target, error)
        return f"the backup {target} still holds the old history: {error}"
    return None


def _force_mirror(course: "CourseConfig", repo: CourseRepo, old_head: str) -> str | None:
    """The mirror's main replaced, only if it still is the old main (a lease)."""
    if not course.mirror:
        return None
    token = os.environ.get(course.mirror_token_env, "") if course.mirror_token_env else ""
    target = mirror.without_userinfo(course.mirror)
    secrets = [token, mirror.auth_header(course.mirror, token).partition("Basic ")[2]] if token else []
    try:
        process = subprocess.run(
            git_command("--git-dir", str(repo.path), "push", "--porcelain", "--no-verify",
                        f"--force-with-lease={BRANCH}:{old_head}", target, f"{BRANCH}:{BRANCH}"),
            capture_output=True, env=mirror.push_env(course.mirror, token), timeout=mirror.PUSH_TIMEOUT,
            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"rewriting the mirror {target} timed out"
    if process.returncode == 0:
        return None
    said = [line.strip() for line in (process.stdout + process.stderr).decode(errors="replace").splitlines()
            if line.strip() and not line.startswith(("To ", "Done"))]
    return redact(f"the mirror {target} was not rewritten: {said[-1] if said else 'git push failed'}", secrets)


def _drop_stored_answers(config: "Config", name: str, head: str) -> None:
    """Stored git answers of other commits hold the old history's bytes: remove them now (a
    running server drops its own when it sees `main` move, also across a restart)."""
    folder = config.server.data_dir / "packcache" / name
    for commit_dir in folder.iterdir() if folder.is_dir() else []:
        if commit_dir.name != head:
            shutil.rmtree(commit_dir, ignore_errors=True)


def retract(config: "Config", course: "CourseConfig", paths: list[str], *, reason: str = "",
            who: str = "", timeout: float | None = None) -> Retraction:
    """Take `paths` (files or folders) out of the course's served history. Raises ReleaseError."""
    targets = clean_paths(paths)
    reason = clean_reason(reason)
    with locked(config, course, timeout, "could not rewrite the history"):
        return _retract_locked(config, course, targets, reason, who)


@contextmanager
def locked(config: "Config", course: "CourseConfig", timeout: float | None, failing: str) -> Iterator[None]:
    """The course lock (no sync runs meanwhile); a busy lock and git failures as ReleaseError."""
    lock = course_lock(config, course.name)
    if timeout is not None:
        lock.timeout = timeout
    try:
        with lock:
            yield
    except Timeout:
        raise ReleaseError("a sync of this course is still running; try again when it ends", 409) from None
    except GitError as error:
        raise ReleaseError(f"{failing}: {error}", 500) from None


def _retract_locked(config: "Config", course: "CourseConfig", targets: list[str], reason: str,
                    who: str) -> Retraction:
    repo = CourseRepo.for_course(config, course.name)
    head = repo.head()
    if head is None:
        raise ReleaseError(f"course {course.name} has no snapshot", 404)
    repo.recover()
    in_head = [path for path in repo.files(head) if matches(path, targets)]
    mapping, first = rewrite(repo, head, targets)
    new_head = mapping[head]
    root = not repo.git("rev-list", "--parents", "-n", "1", first).split()[1:]
    pins = _pins(repo)
    lines = ["start", f"update {BRANCH} {new_head} {head}"]
    lines += [f"update {ref} {mapping[commit]} {commit}" for ref, commit in pins.items() if commit in mapping]
    lines += ["prepare", "commit"]
    repo.git("update-ref", "--stdin", input=("\n".join(lines) + "\n").encode())
    # From here on the new history is served; what follows removes the old one everywhere.
    _save_rewrites(config, course.name, mapping, root, float(repo.git("show", "-s", "--format=%ct", first)))
    purge(repo.path)
    _drop_stored_answers(config, course.name, new_head)
    store = StateStore.for_course(config, course.name)
    state = store.read()
    rows = state.files if state else {}
    # "" holds any version: the state did not know which one main held
    hold = {path: rows[path].version if path in rows else "" for path in in_head}
    store.retracted(new_head if state is not None and state.commit == head else None,
                    [path for path in rows if matches(path, targets)], hold)
    result = Retraction(course.name, targets, reason, who or "unknown", time.time(), head, new_head,
                        len(mapping), first, root, held=sorted(hold))
    result.backup_error = _copy_to_backup(config, course.name, repo)
    result.mirror_error = _force_mirror(course, repo, head)
    status.record_event(config, course.name, {
        "time": result.time, "ok": True, "kind": "retract", "who": result.who, "retracted": targets,
        "reason": reason, "commit": new_head, "rewritten": len(mapping), "root_rewritten": root}, mapping)
    log.warning("%s: %s retracted %d path(s); %d snapshot(s) rewritten, main %s -> %s", course.name,
                result.who, len(targets), len(mapping), head[:10], new_head[:10])
    return result


def _pins(repo: CourseRepo) -> dict[str, str]:
    """Every pinned release branch -> its commit."""
    out = repo.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/release/")
    return dict(line.split() for line in out.splitlines() if line.strip())


def release_again(config: "Config", course: "CourseConfig", paths: list[str]) -> list[str]:
    """Stop holding back retracted files: the next sync publishes them if the source offers them."""
    targets = clean_paths(paths)
    store = StateStore.for_course(config, course.name)
    held = [path for path in store.held() if matches(path, targets)]
    if not held:
        raise ReleaseError(f"none of {', '.join(targets)} is held back", 404)
    with course_lock(config, course.name):
        store.unhold(held)
    return held


# -- rollback: an earlier snapshot's files, published as a new snapshot --------------------------

@dataclass
class Rollback:
    course: str
    to: str  # the snapshot whose files are published again
    commit: str  # the new main (its parent: the main before)
    who: str
    time: float
    mirror_error: str | None = None

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self), "on_hold": True}


def served_snapshot(repo: CourseRepo, head: str, commit: str) -> str:
    """The full id of `commit` (an id or a unique prefix of at least 7) if main has served it."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit or ""):
        raise ReleaseError(f"{str(commit)[:60]!r} is not a commit id")
    for served in repo.git("rev-list", "--first-parent", head).split():
        if served.startswith(commit):
            return served
    raise ReleaseError(f"commit {commit} is not in the history students are served (a retract may have"
                       " replaced it; see the course's history for the snapshots there are)", 404)


def rollback(config: "Config", course: "CourseConfig", commit: str, *, who: str = "",
             timeout: float | None = None) -> Rollback:
    """Publish the files of snapshot `commit` as a new snapshot (history grows) and hold the
    course, so no sync publishes over it until `resume`. Raises ReleaseError."""
    with locked(config, course, timeout, "could not roll back"):
        repo = CourseRepo.for_course(config, course.name)
        head = repo.head()
        if head is None:
            raise ReleaseError(f"course {course.name} has no snapshot", 404)
        target = served_snapshot(repo, head, commit)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(repo.git("log", "-1", "--format=%ct", target))))
        message = f"Roll back to the snapshot of {when} ({target[:10]})\n"
        new = repo.git("-c", "user.name=f2git", "-c", "user.email=f2git@localhost", "commit-tree",
                       f"{target}^{{tree}}", "-p", head, input=message.encode()).strip()
        repo.git("update-ref", BRANCH, new, head)
        result = Rollback(course.name, target, new, who or "unknown", time.time())
        holds.hold(config, course.name, {"time": result.time, "who": result.who, "commit": new, "to": target,
                                         "reason": f"rolled back to the snapshot of {when}"})
        backup.save(config, course.name, new)
        result.mirror_error = mirror.push_course(config, course, repo.path)
        status.record_event(config, course.name, {"time": result.time, "ok": True, "kind": "rollback",
                                                  "who": result.who, "to": target, "commit": new})
    log.warning("%s: %s rolled back to %s; the course is on hold", course.name, result.who, target[:10])
    return result


def resume(config: "Config", course: "CourseConfig") -> bool:
    """Let syncs publish again after a rollback; False when the course was not on hold."""
    with course_lock(config, course.name):
        return holds.resume(config, course.name)


# -- pins: a snapshot served as branch release/<name> beside main ---------------------------------

PIN_PREFIX = "refs/heads/release/"
PIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def _pin_ref(name: str) -> str:
    if not PIN_NAME.fullmatch(name or "") or ".." in name or name.endswith((".lock", ".")):
        raise ReleaseError(f"{str(name)[:70]!r} is not a pin name: use lowercase letters, digits, '.', '_' and '-'")
    return PIN_PREFIX + name


def pins(config: "Config", name: str) -> dict[str, str]:
    """pin name -> commit, of every pin of the course."""
    repo = CourseRepo.for_course(config, name)
    return {ref[len(PIN_PREFIX):]: commit for ref, commit in _pins(repo).items()} if repo.exists() else {}


def pin(config: "Config", course: "CourseConfig", name: str, commit: str | None = None, *,
        timeout: float | None = None) -> str:
    """Serve snapshot `commit` (default: the current one) as branch release/<name>; returns its id.
    Later snapshots do not move it; a retract rewrites it like main."""
    ref = _pin_ref(name)
    with locked(config, course, timeout, "could not pin"):
        repo = CourseRepo.for_course(config, course.name)
        head = repo.head()
        if head is None:
            raise ReleaseError(f"course {course.name} has no snapshot", 404)
        target = served_snapshot(repo, head, commit) if commit else head
        repo.git("update-ref", ref, target)
    log.info("%s: pinned %s at %s", course.name, ref, target[:10])
    return target


def unpin(config: "Config", course: "CourseConfig", name: str, *, timeout: float | None = None) -> None:
    ref = _pin_ref(name)
    with locked(config, course, timeout, "could not remove the pin"):
        repo = CourseRepo.for_course(config, course.name)
        if repo.resolve(ref) is None:
            raise ReleaseError(f"course {course.name} has no pin {name!r}", 404)
        repo.git("update-ref", "-d", ref)


def pins_stamp(repo_path: Path) -> str:
    """The pins as served, read from the ref files (no git): ref advertisements depend on them."""
    found = []
    folder = repo_path / PIN_PREFIX
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            found.append(f"{entry.name}={entry.read_text().strip()}")
        except OSError:
            continue
    try:
        found += sorted(line for line in (repo_path / "packed-refs").read_text().splitlines()
                        if f" {PIN_PREFIX}" in line)
    except OSError:
        pass
    return ";".join(found)
