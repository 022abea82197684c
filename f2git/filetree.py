"""What students get: the files of one snapshot with their sizes and when each last changed.

Computed once per snapshot (two git commands, whatever the number of files) and kept in
memory by commit id: a page view after that costs nothing. Callers run it off the event loop.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from .store import CourseRepo

CACHED_SNAPSHOTS = 32  # snapshots kept (a few per course)


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    changed: float | None  # commit time of the last snapshot that added or changed it

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Folder:
    name: str
    path: str
    folders: list["Folder"] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    count: int = 0  # files below, at any depth
    size: int = 0


_cache: "OrderedDict[tuple[str, str], list[FileInfo]]" = OrderedDict()
_lock = threading.Lock()


def snapshot_files(repo: CourseRepo, commit: str | None) -> list[FileInfo]:
    """Every file of `commit`, sorted by path; [] without a snapshot."""
    if not commit:
        return []
    key = (str(repo.path), commit)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    files = _read(repo, commit)
    with _lock:
        _cache[key] = files
        while len(_cache) > CACHED_SNAPSHOTS:
            _cache.popitem(last=False)
    return files


def _read(repo: CourseRepo, commit: str) -> list[FileInfo]:
    sizes: dict[str, int] = {}
    for record in repo.git("ls-tree", "-r", "-l", "-z", "--full-tree", commit).split("\0"):
        if record:
            meta, path = record.split("\t", 1)
            sizes[path] = int(meta.split()[3])
    # One walk of the history, newest first: a path's first appearance is its last change.
    changed: dict[str, float] = {}
    log = repo.git("log", "--format=%x01%ct", "--name-only", "-z", "--no-renames", "--diff-filter=AMT", commit)
    for chunk in log.split("\x01"):
        if not chunk:
            continue
        stamp, *paths = chunk.split("\0")
        for path in paths:
            path = path.lstrip("\n")
            if path in sizes and path not in changed:
                changed[path] = float(stamp)
    return [FileInfo(path, sizes[path], changed.get(path)) for path in sorted(sizes)]


def tree(files: list[FileInfo]) -> Folder:
    """The files as nested folders (folders first, then files, each by name)."""
    root = Folder("", "")
    folders = {"": root}
    for info in files:
        parent = root
        parts = info.path.split("/")[:-1]
        for depth in range(len(parts)):
            path = "/".join(parts[:depth + 1])
            if path not in folders:
                folders[path] = Folder(parts[depth], path)
                parent.folders.append(folders[path])
            parent = folders[path]
        parent.files.append(info)
    for info in files:  # counts and sizes of every folder above each file
        parts = info.path.split("/")[:-1]
        for depth in range(len(parts) + 1):
            folder = folders["/".join(parts[:depth])]
            folder.count += 1
            folder.size += info.size
    for folder in folders.values():
        folder.folders.sort(key=lambda f: f.name)
        folder.files.sort(key=lambda f: f.name)
    return root


def paths(files: list[FileInfo]) -> set[str]:
    return {info.path for info in files}

