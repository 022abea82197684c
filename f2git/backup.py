"""Keep every course's history outside `data_dir`, and continue it when a repo is lost.

Students' clones hold a course's history. A course repo rebuilt from nothing would get a new,
unrelated history, and every student's next click would fail ("refusing to merge unrelated
histories"). So after each published snapshot f2git fast-forwards `main` of a bare backup
repo `<backup_dir>/<course>.git` (`[server] backup_dir`, on another disk ideally; only the
new objects travel), and before a sync whose repo is missing it brings the history back:
from that backup, else from the course's `mirror`. Without a sync state the next sync then
re-verifies every file against the source and commits only real changes on top.

The backup is fast-forward only, like the mirror: a repo that somehow started a new history
never overwrites the one students have.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping

from . import historycheck, mirror
from .store import CourseRepo, GitError, git_command, git_env

if TYPE_CHECKING:
    from .config import Config, CourseConfig

log = logging.getLogger("f2git.backup")
BRANCH = "refs/heads/main"
TIMEOUT = 600.0  # s for one push or fetch


def backup_path(config: "Config", name: str) -> Path | None:
    backup_dir = config.server.backup_dir
    return None if backup_dir is None else Path(backup_dir) / f"{name}.git"


def _main_of(repo: Path) -> str | None:
    """The commit of `main` in a bare repo, read from its files (no git process per sync)."""
    try:
        return (repo / BRANCH).read_text().strip() or None
    except OSError:
        pass
    try:
        for line in (repo / "packed-refs").read_text().splitlines():
            if line.endswith(" " + BRANCH):
                return line.split()[0]
    except OSError:
        pass
    return None


def _git(*args: str, env: Mapping[str, str] | None = None) -> None:
    try:
        process = subprocess.run(git_command(*args), capture_output=True, env=dict(env or git_env()),
                                 timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[2] if args[0] == '--git-dir' else args[0]} timed out") from None
    if process.returncode != 0:
        lines = process.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(lines[-1] if lines else f"git exited with status {process.returncode}")


def save(config: "Config", name: str, commit: str | None) -> str | None:
    """After a sync: fast-forward the course's backup to `commit`. Returns why that failed (also
    logged; the course's health shows it and the next sync retries), None when it is saved."""
    target = backup_path(config, name)
    if target is None or commit is None or _main_of(target) == commit:
        return None
    try:
        if not (target / "HEAD").is_file():
            CourseRepo(target).ensure()
        source = CourseRepo.for_course(config, name).path
        _git("--git-dir", str(source), "push", "--quiet", "--no-verify", str(target), f"{BRANCH}:{BRANCH}")
    except (GitError, OSError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        log.warning("%s: backup to %s failed: %s (retried after the next sync)", name, target, reason)
        return f"backup to {target} failed: {reason}"
    return None


@dataclass
class Restore:
    """What `restore` did: `where` the history came from (None: the course starts anew), and
    `refused`: why histories found were not taken (for the course's status and the log)."""

    where: str | None = None
    refused: str | None = None


@dataclass
class _Candidate:
    where: str
    url: str
    env: Mapping[str, str]
    secrets: list[str] = field(default_factory=list)


def _candidates(config: "Config", course: "CourseConfig", env: Mapping[str, str]) -> Iterator[_Candidate]:
    """Where a lost course's history may come from, in order: backup_dir, then the mirror."""
    backup = backup_path(config, course.name)
    if backup is not None and _main_of(backup):
        yield _Candidate(f"the backup {backup}", str(backup), git_env())
    if not course.mirror:
        return
    token = env.get(course.mirror_token_env, "") if course.mirror_token_env else ""
    found = _Candidate("its mirror", mirror.without_userinfo(course.mirror), mirror.push_env(course.mirror, token),
                       [token] if token else [])
    try:
        listed = subprocess.run(git_command("ls-remote", found.url, BRANCH), capture_output=True, env=found.env,
                                timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        said = listed.stderr.decode(errors="replace").strip().splitlines()
        problem = None if listed.returncode == 0 else said[-1] if said else "git ls-remote failed"
    except subprocess.TimeoutExpired:
        problem = "timed out"
    if problem:
        # f2git may not read every mirror (a push-only token): go on as a new course; a history
        # the mirror does have is then reported by the push, and backup_dir is the sure way
        log.warning("%s", mirror.redact(f"{course.name}: the course repo is missing and its mirror {found.url}"
                                        f" cannot be read to restore it: {problem}", found.secrets))
        return
    if listed.stdout.strip():  # an empty mirror: the course starts here
        yield found


def restore(config: "Config", course: "CourseConfig", env: Mapping[str, str] | None = None) -> Restore:
    """Before a sync (under the course lock): a missing repo gets its history back, if that
    history passes the checks f2git's own snapshots pass (historycheck.py); one that does not
    is refused (logged, in `refused`) and the next place is tried; with none, the course
    starts a new history, as without a backup.

    Raises GitError when a history cannot be fetched: a new history would strand students.
    """
    repo = CourseRepo.for_course(config, course.name)
    if repo.exists():
        return Restore()
    refusals: list[str] = []
    for candidate in _candidates(config, course, os.environ if env is None else env):
        repo.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{repo.path.name}.restore.", dir=repo.path.parent)) / "repo.git"
        try:
            CourseRepo(scratch).ensure()
            _git("--git-dir", str(scratch), "fetch", "--quiet", "--no-tags", candidate.url, f"+{BRANCH}:{BRANCH}",
                 env=candidate.env)
            historycheck.verify(scratch, BRANCH)
            os.rename(scratch, repo.path)  # whole or not at all: a click never sees a half-restored repo
        except GitError as error:
            raise GitError(mirror.redact(f"cannot restore the course's history from {candidate.where}: {error}",
                                         candidate.secrets)) from None
        except historycheck.UntrustedHistory as error:
            refusal = mirror.redact(f"the history in {candidate.where} was refused: {error}", candidate.secrets)
            log.error("%s: the course repo is missing; %s", course.name, refusal)
            refusals.append(refusal)
            continue
        finally:
            shutil.rmtree(scratch.parent, ignore_errors=True)
        log.warning("%s: the course repo was missing; its history was restored from %s", course.name,
                    candidate.where)
        return Restore(candidate.where, "; ".join(refusals) or None)
    if refusals:
        refusals.append("the course started a new history: students' next click fails until they re-clone")
        log.error("%s: %s", course.name, refusals[-1])
    return Restore(None, "; ".join(refusals) or None)
