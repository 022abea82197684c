"""Whether a history from outside (a backup, a mirror) is one f2git could have written.

Anyone who can write to `backup_dir` or push to a course's mirror can add commits there.
Before such a history is served again it must pass what f2git's own snapshots pass:

- `git fsck --strict` (no malformed objects, no hostile `.gitmodules`, no `.git` look-alikes);
- f2git's path rules (`paths.safe_path`) on every path of every snapshot, and only plain
  files (no symlinks, no submodules);
- every commit made by f2git (its committer and author identity, one parent at most).

The identity is a tripwire, not a signature: someone who copies it can still add files to
the history. Keeping backup_dir and the mirror's push rights to f2git alone is the defence.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from .paths import UnsafePath, safe_path
from .store import IDENTITY, git_command, git_env

TIMEOUT = 600.0  # s for one git command over the whole history
FILE_MODES = {"100644", "100755"}


class UntrustedHistory(Exception):
    """Why a history was refused, in one line for the log and the course's status."""


def _git(repo: Path, *args: str) -> bytes:
    try:
        process = subprocess.run(git_command("--git-dir", str(repo), *args), capture_output=True, env=git_env(),
                                 timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UntrustedHistory(f"git {args[0]} took longer than {TIMEOUT:g} s") from None
    if process.returncode != 0:
        said = [line for line in process.stderr.decode(errors="replace").splitlines() if line.strip()]
        shown = said[0] if said else process.stdout.decode(errors="replace").strip()[:300]
        raise UntrustedHistory(f"git {args[0]} failed: {shown}")
    return process.stdout


def verify(repo: Path, ref: str = "refs/heads/main") -> None:
    """Raises UntrustedHistory naming the first problem of `ref`'s history in the bare `repo`."""
    _git(repo, "fsck", "--strict", "--no-dangling", "--no-progress")
    trees: set[str] = set()
    log = _git(repo, "log", "--format=%H%x00%P%x00%an <%ae>%x00%cn <%ce>%x00%T", ref)
    for line in log.decode(errors="replace").splitlines():
        commit, parents, author, committer, tree = line.split("\0")
        if committer != IDENTITY or author != IDENTITY:
            raise UntrustedHistory(f"commit {commit[:12]} was not made by f2git (author {author!r},"
                                   f" committer {committer!r})")
        if len(parents.split()) > 1:
            raise UntrustedHistory(f"commit {commit[:12]} is a merge: f2git never writes one")
        trees.add(tree)
    for tree in trees:
        _check_tree(repo, tree)


def _check_tree(repo: Path, tree: str) -> None:
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", tree)
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        mode = meta.split(b" ", 1)[0].decode()
        try:
            path = raw_path.decode()
        except UnicodeDecodeError:
            raise UntrustedHistory(f"tree {tree[:12]} holds a path that is not UTF-8: {raw_path!r}") from None
        if mode not in FILE_MODES:
            raise UntrustedHistory(f"tree {tree[:12]} holds {path!r} with mode {mode}: f2git writes plain files only")
        try:
            if safe_path(path) != path:
                raise UnsafePath("not in the normal form f2git writes")
        except UnsafePath as refused:
            raise UntrustedHistory(f"tree {tree[:12]} holds the path {path!r}: {refused}") from None
