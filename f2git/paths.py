"""Every path from a source is checked here before it can reach a repository.

A path is normalised (Unicode NFC, `./` and doubled slashes folded) and rejected when
it could escape the work tree, touch git's own files or confuse a student's checkout.
"""
from __future__ import annotations

import re
import unicodedata

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Code points HFS+ ignores when comparing names, so ".g\u200cit" is ".git" on a Mac.
_IGNORABLE = re.compile("[\u200b-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# Files git itself reads from a work tree: they would change how students' git behaves.
_GIT_FILES = {".git", ".gitmodules", ".gitattributes"}


class UnsafePath(ValueError):
    """The reason a path was refused, in words for the skip report."""


def _is_git_name(name: str) -> bool:
    folded = _IGNORABLE.sub("", name).casefold()
    # NTFS ignores trailing dots and spaces and reads ".git:x" as a stream of ".git";
    # "git~1" is the 8.3 short name of ".git". Git's fsck and checkout refuse them all.
    folded = folded.split(":", 1)[0].rstrip(". ")
    return folded in _GIT_FILES or folded == "git~1"


def safe_path(raw: str) -> str:
    """The normalised form of `raw`, or UnsafePath naming why it is refused."""
    if not isinstance(raw, str) or not raw:
        raise UnsafePath("empty name")
    if _CONTROL.search(raw):
        raise UnsafePath("control character in name")
    if "\\" in raw:
        raise UnsafePath("backslash in name")
    if raw.startswith("/"):
        raise UnsafePath("absolute path")
    path = unicodedata.normalize("NFC", raw)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafePath("empty name")
    for part in parts:
        if part == "..":
            raise UnsafePath("'..' in path")
        if _is_git_name(part):
            raise UnsafePath(f"reserved git name {part!r}")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise UnsafePath(f"name longer than {MAX_NAME_BYTES} bytes")
    path = "/".join(parts)
    if len(path.encode()) > MAX_PATH_BYTES:
        raise UnsafePath(f"path longer than {MAX_PATH_BYTES} bytes")
    return path
