"""Reading a course's bare repo in tests: its files' bytes, fsck; a course folder that changes
every file per generation (for the crash and fault tests)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from f2git.store import CourseRepo


def fsck_clean(repo: CourseRepo) -> None:
    subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True)


FILES = 400


def write_course(root: Path, generation: int) -> dict[str, bytes]:
    files = {}
    for i in range(FILES):
        # Each generation changes every file, so a sync has plenty to write when killed.
        body = (f"generation {generation} file {i}\n" * 200).encode()
        path = root / f"week{i % 10}" / f"file{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        files[f"week{i % 10}/file{i}.txt"] = body
    return files


def snapshot(repo: CourseRepo) -> dict[str, bytes]:
    out = {}
    for path, blob in repo.files(repo.head()).items():
        out[path] = subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "blob", blob],
                                   check=True, capture_output=True).stdout
    return out
