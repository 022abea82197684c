"""The bare repository of one course: objects go in through `git fast-import`, `main` moves
by one compare-and-swap transaction. The served repo holds the snapshots and nothing else:
the sync state lives outside it (f2git/syncstate.py).

Only short-lived git processes: the server is long-running, and GitPython's persistent
`cat-file` processes leak there (its README says so).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .config import Config

BRANCH = "refs/heads/main"
LEGACY_STATE_REF = "refs/f2git/state"  # where f2git 0.1 kept the sync state (see purge_legacy_state)
INCOMING = "refs/f2git/incoming"  # fast-import's scratch refs; dropped in the same transaction
ZERO = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Every new course repo starts with an empty commit: a file released by mistake in the first
# snapshot can then be retracted without rewriting the root all students share (release.py).
ROOT_MESSAGE = "f2git: the course starts here (no files)\n"
IDENTITY = "f2git <f2git@localhost>"
COPY_CHUNK = 1 << 16
# Files from this size on are streamed by git in chunks (never held whole in memory), get no
# delta search, and the pack that brings them in is kept out of routine repacks (a `.keep`
# file): a large file is compressed and written once.
BIG_FILE = 16 << 20

# Written into every course repo. hideRefs keeps fast-import's scratch refs out of clients'
# sight; gc.auto=0 because we repack ourselves, right after each snapshot.
REPO_CONFIG = {
    "uploadpack.hideRefs": "refs/f2git",
    "http.receivepack": "false",
    "receive.denyNonFastForwards": "true",
    "gc.auto": "0",
    "core.fsync": "committed",
    "core.logAllRefUpdates": "false",
    "core.bigFileThreshold": str(BIG_FILE),
}
# fast-import keeps what it wrote as a pack, even a small one (by default it unpacks fewer
# than 100 objects into loose ones, which repack must then compress all over again).
FAST_IMPORT = ["-c", "fastimport.unpackLimit=0", "-c", f"core.bigFileThreshold={BIG_FILE}"]


class GitError(Exception):
    """A git command failed; the message is safe to show."""


def _last_words(stderr: bytes, fallback: object) -> str:
    """What a failed git said, in one line; a full disk is named as such whatever git calls it."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    if any("No space left on device" in line or "Out of diskspace" in line for line in lines):
        return "the disk is full"
    return lines[-1] if lines else str(fallback)


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # No user or system config may change how snapshots are written.
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               LC_ALL="C")
    return env


# git children die with us: an orphaned `git repack` from a killed sync would race the next one.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []


def git_command(*args: str) -> list[str]:
    return [*_DIE_WITH_PARENT, "git", *args]


def git_blob_id(size: int, chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha1(b"blob %d\0" % size)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _quote(path: str) -> str:
    """fast-import's C-style quoting; paths were checked free of control characters."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CourseRepo:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_course(cls, config: "Config", name: str) -> "CourseRepo":
        return cls(config.repos_dir / f"{name}.git")

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        process = subprocess.run(git_command("--git-dir", str(self.path), *args), input=input,
                                 capture_output=True, env=git_env())
        if check and process.returncode != 0:
            raise GitError(f"git {args[0]} failed: {_last_words(process.stderr, process.returncode)}")
        return process.stdout.decode(errors="surrogateescape")

    def exists(self) -> bool:
        return (self.path / "HEAD").is_file()

    def ensure(self) -> None:
        """Create the bare repo if missing; built aside and renamed, so a crash leaves none half-made."""
        if self.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            subprocess.run(git_command("init", "-q", "--bare", "-b", "main", str(scratch)), check=True,
                           capture_output=True, env=git_env())
            for key, value in REPO_CONFIG.items():
                subprocess.run(git_command("--git-dir", str(scratch), "config", key, value), check=True,
                               capture_output=True, env=git_env())
            (scratch / "description").write_text("f2git course snapshot\n")
            shutil.rmtree(scratch / "hooks", ignore_errors=True)
            os.rename(scratch, self.path)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
            if not self.exists():
                raise
        except subprocess.CalledProcessError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            raise GitError(f"git init failed: {error.stderr.decode(errors='replace').strip()}") from None

    def resolve(self, ref: str) -> str | None:
        out = self.git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False).strip()
        return out or None

    def head(self) -> str | None:
        return self.resolve(BRANCH) if self.exists() else None

    def files(self, commit: str | None) -> dict[str, str]:
        """path -> blob id of every file in `commit`."""
        if commit is None:
            return {}
        out = self.git("ls-tree", "-r", "-z", "--full-tree", commit)
        files = {}
        for record in out.split("\0"):
            if record:
                meta, path = record.split("\t", 1)
                files[path] = meta.split()[2]
        return files

    def legacy_state(self, holder: str) -> dict | None:
        """The sync state f2git 0.1 kept in this repo (state.json in commit `holder`)."""
        try:
            data = json.loads(self.git("cat-file", "blob", f"{holder}:state.json"))
            return data if isinstance(data, dict) and isinstance(data.get("files", {}), dict) else None
        except (GitError, ValueError):
            return None

    def purge_legacy_state(self) -> None:
        """Drop the old in-repo sync state and every object only it reached, so protocol v2
        (which serves any object named by id) has nothing of it left to serve. Once per repo,
        under the course lock: the repo then also gets today's REPO_CONFIG."""
        self.git("update-ref", "-d", LEGACY_STATE_REF)
        for key, value in REPO_CONFIG.items():
            self.git("config", key, value)
        self.git("repack", "-a", "-d", "-q")  # unreachable packed objects are not carried over
        self.git("prune", "--expire=now")  # nor loose ones

    def log(self, limit: int = 50) -> list[dict]:
        """Recent snapshots, newest first (the empty root commit is no snapshot)."""
        if self.head() is None:
            return []
        out = self.git("log", f"-{limit}", "--format=%H%x00%ct%x00%P%x00%T%x00%s", BRANCH)
        entries = []
        for line in out.splitlines():
            sha, when, parents, tree, subject = line.split("\0", 4)
            if not parents and tree == EMPTY_TREE:
                continue
            entries.append({"commit": sha, "time": int(when), "message": subject})
        return entries

    def empty_root(self) -> str:
        """A new parentless commit with no files, the base of a new course's first snapshot."""
        self.git("hash-object", "-t", "tree", "-w", "--stdin", input=b"")
        return self.git("-c", "user.name=f2git", "-c", "user.email=f2git@localhost", "commit-tree",
                        EMPTY_TREE, input=ROOT_MESSAGE.encode()).strip()

    def writer(self, base: str | None) -> "SnapshotWriter":
        return SnapshotWriter(self, base)

    def repack(self) -> None:
        """Fold fast-import's packs geometrically so a herd of clones reuses one pack.
        Packs holding a big file carry a `.keep` and are left as they are."""
        self.git("-c", f"core.bigFileThreshold={BIG_FILE}", "repack", "-d", "-q", "--geometric=2")

    def packs(self) -> set[str]:
        return {p.name for p in (self.path / "objects" / "pack").glob("pack-*.pack")}

    def remove_debris(self) -> None:
        """Half-written packs and crash reports of a fast-import that failed or was killed:
        after a full disk they would keep it full. Only called under the course's sync lock."""
        for debris in [*self.path.glob("objects/pack/tmp_pack_*"), *self.path.glob("fast_import_crash_*")]:
            debris.unlink(missing_ok=True)

    def recover(self) -> None:
        """Undo what a killed sync left behind. Call only under the course lock: then no
        writer of ours is running, and any git lock file or scratch object is stale."""
        stale = [*self.path.glob("refs/**/*.lock"), *self.path.glob("*.lock"),
                 *self.path.glob("objects/pack/tmp_*"), *self.path.glob("objects/tmp_*"),
                 *self.path.glob("f2git-marks-*"), *self.path.glob("f2git-spool-*")]
        # fast-import marks each pack it finishes with a .keep until it ends: one it never
        # ended would keep its unreachable objects forever.
        stale += [keep for keep in self.path.glob("objects/pack/*.keep") if keep.read_bytes() == b"fast-import\n"]
        for leftover in stale:
            leftover.unlink(missing_ok=True)
        out = self.git("for-each-ref", "--format=%(refname)", INCOMING, check=False)
        refs = [ref for ref in out.split() if ref]
        if refs:
            self.git("update-ref", "--stdin", input="".join(f"delete {r}\n" for r in refs).encode())


class SnapshotWriter:
    """One `git fast-import` run: blobs streamed in, then the commit, then one CAS of `main`.

    Nothing becomes visible until `publish()`: fast-import writes only objects and a scratch
    ref, and a stream cut short (no `done`) makes it abort without updating any ref.
    """

    def __init__(self, repo: CourseRepo, base: str | None):
        self.repo = repo
        self.base = base
        self.run_id = uuid.uuid4().hex[:12]
        fd, marks = tempfile.mkstemp(prefix="f2git-marks-", dir=repo.path)
        os.close(fd)  # fast-import writes it; an open fd here would leak one per sync in the server
        self.marks_file = Path(marks)
        self.next_mark = 1
        self.scratch_refs: list[str] = []
        self.packs_before = repo.packs()
        self.big = False  # a big file went in: its pack is kept out of routine repacks
        self.process = subprocess.Popen(
            git_command("--git-dir", str(repo.path), *FAST_IMPORT, "fast-import", "--quiet", "--done",
                        f"--export-marks={self.marks_file}"),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=git_env())
        self.stdin: IO[bytes] = self.process.stdin
        self._send(b"feature done\n")

    def _send(self, data: bytes) -> None:
        try:
            self.stdin.write(data)
        except BrokenPipeError:
            raise self._failure() from None

    def _failure(self) -> GitError:
        self.process.kill()
        return GitError(f"git fast-import failed: {_last_words(self.process.stderr.read(), 'stopped')}")

    def blob(self, source: IO[bytes], size: int) -> str:
        """Stream `size` bytes from `source` into a blob; returns its mark."""
        mark = f":{self.next_mark}"
        self.next_mark += 1
        self.big = self.big or size >= BIG_FILE
        self._send(b"blob\nmark %s\ndata %d\n" % (mark.encode(), size))
        remaining = size
        while remaining:
            chunk = source.read(min(COPY_CHUNK, remaining))
            if not chunk:
                raise GitError("a spooled file ended early")
            self._send(chunk)
            remaining -= len(chunk)
        self._send(b"\n")
        return mark

    def commit(self, message: str, changes: dict[str, str], deletions: Iterable[str]) -> str:
        """A commit on top of `base`: `changes` maps path -> blob id or mark; returns its mark."""
        mark = f":{self.next_mark}"
        self.next_mark += 1
        ref = f"{INCOMING}/{self.run_id}/main"
        self.scratch_refs.append(ref)
        body = message.encode()
        header = f"commit {ref}\nmark {mark}\ncommitter {IDENTITY} {int(time.time())} +0000\n"
        self._send(header.encode() + b"data %d\n" % len(body) + body + b"\n")
        if self.base:
            self._send(f"from {self.base}\n".encode())
        lines = [f"D {_quote(path)}" for path in sorted(deletions)]
        lines += [f"M 100644 {blob} {_quote(path)}" for path, blob in sorted(changes.items())]
        self._send("".join(line + "\n" for line in lines).encode() + b"\n")
        return mark

    def finish(self) -> dict[str, str]:
        """Close the stream; returns mark -> object id."""
        self._send(b"done\n")
        self.stdin.close()
        if self.process.wait() != 0:
            raise self._failure()
        marks = {}
        for line in self.marks_file.read_text().splitlines():
            mark, sha = line.split()
            marks[mark] = sha
        self.marks_file.unlink(missing_ok=True)
        if self.big:
            for pack in self.repo.packs() - self.packs_before:
                keep = self.repo.path / "objects" / "pack" / pack.replace(".pack", ".keep")
                keep.write_text("f2git: holds a big file, left out of routine repacks\n")
        return marks

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.marks_file.unlink(missing_ok=True)
        if self.process.returncode != 0:
            self.repo.remove_debris()

    def publish(self, new_main: str, old_main: str | None) -> None:
        """Move main to `new_main` only if it is still `old_main`; drop the scratch ref."""
        lines = ["start"]
        if new_main != old_main:
            lines.append(f"update {BRANCH} {new_main} {old_main or ZERO}")
        lines += [f"delete {ref}" for ref in self.scratch_refs]
        lines += ["prepare", "commit"]
        try:
            self.repo.git("update-ref", "--stdin", input=("\n".join(lines) + "\n").encode())
        except GitError as error:
            raise GitError(f"the snapshot could not be published (did the branch move?): {error}") from None
