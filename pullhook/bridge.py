"""Bridge a student's clone to a course history that a retract rewrote (f2git/release.py).

f2git names each rewritten commit's twin (`GET /api/courses/<c>/rewrites`: old id -> new
id). After the fetch has brought the new commits, and before nbgitpuller merges, this makes
the student's old commits stand for their twins, locally and reversibly (refs/replace/):

- an old commit the student has whole: `refs/replace/<old>` -> new (a plain replacement);
- an old commit without parents here (the bottom of a shallow clone, a late joiner's first
  snapshot: git's shallow list cuts its parents whatever replaces it; or a rewritten root):
  the student's own commits on top of it get a replacement with the twin as parent
  (`git replace --graft`), and a branch that still points at it moves to the twin (the files
  in the folder stay as they are).

Without replacements git sees the original objects: gc and fsck keep working, and nothing
of the student's is rewritten. Only the standard library: it runs in the student's image.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Mapping

ID_LENGTH = 40
WAIT = 30.0  # s to wait for the fetched pack to be indexed


def git(git_dir: str, *args: str, input: bytes | None = None, check: bool = True) -> str:
    # the original objects: what the student's repo really holds
    process = subprocess.run(["git", "--no-replace-objects", "--git-dir", git_dir, *args], input=input,
                             capture_output=True)
    if check and process.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {process.stderr.decode(errors='replace').strip()[-300:]}")
    return process.stdout.decode(errors="replace")


def fetch_rewrites(base: str, course: str, token: str, timeout: float) -> dict[str, str]:
    request = urllib.request.Request(f"{base}/api/courses/{course}/rewrites", headers={"Accept": "application/json"})
    if token:
        request.add_unredirected_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        mapping = json.load(response).get("rewrites") or {}
    return {old: new for old, new in mapping.items()
            if isinstance(old, str) and isinstance(new, str) and len(old) == len(new) == ID_LENGTH}


def present(git_dir: str, ids: list[str]) -> set[str]:
    """The ids of commits this repo holds."""
    if not ids:
        return set()
    out = git(git_dir, "cat-file", "--batch-check=%(objectname) %(objecttype)", input="".join(f"{i}\n" for i in ids).encode())
    return {line.split()[0] for line in out.splitlines() if line.endswith(" commit")}


def bottoms(git_dir: str, commits: Mapping[str, str]) -> set[str]:
    """The commits without parents here: a shallow clone's first, or a rewritten root. Their
    twins share no parent with them, so only grafting their children onto the twin links the
    student's history to the new one."""
    out = git(git_dir, "rev-list", "--no-walk", "--parents", *commits)
    return {fields[0] for fields in map(str.split, out.splitlines()) if len(fields) == 1}


def bridge(git_dir: str, mapping: Mapping[str, str], wait: float = WAIT) -> int:
    """Apply `mapping` to the repo at `git_dir`; returns how many replacements were made."""
    olds = present(git_dir, list(mapping))
    if not olds:
        return 0  # a clone that never had a rewritten commit
    # git's fetch ends this helper's transport as soon as it has the whole answer, and may still
    # be indexing the pack: the twins of the old commits here appear a moment later
    deadline = time.monotonic() + wait
    while not (have := present(git_dir, [mapping[old] for old in olds])) and time.monotonic() < deadline:
        time.sleep(0.05)
    usable = {old: mapping[old] for old in olds if mapping[old] in have}
    if not usable:
        return 0
    shallow = bottoms(git_dir, usable)
    updates = [f"update refs/replace/{old} {new}" for old, new in usable.items() if old not in shallow]
    made = len(updates)
    if shallow:
        # the student's commits that stand on a shallow old commit: graft them onto its twin
        for line in git(git_dir, "rev-list", "--parents", "--branches", "HEAD").splitlines():
            commit, *parents = line.split()
            if commit in usable or not shallow.intersection(parents):
                continue
            git(git_dir, "replace", "-f", "--graft", commit, *(usable.get(parent, parent) for parent in parents))
            made += 1
        for line in git(git_dir, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/").splitlines():
            ref, commit = line.split()
            if commit in shallow:  # the branch is the late joiner's first snapshot itself
                updates.append(f"update {ref} {usable[commit]} {commit}")
                made += 1
    if updates:
        git(git_dir, "update-ref", "--stdin", input=("\n".join(updates) + "\n").encode())
    return made
