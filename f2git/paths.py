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
# Code points HFS+ ignores when comparing names (git's utf8.c, next_hfs_char).
_IGNORABLE = re.compile("[\u200b-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# Files git itself reads from a work tree, with the prefix of the hashed NTFS short name
# Windows may give them (git's path.c: is_ntfs_dotgitmodules and friends).
_GIT_FILES = {"git": None, "gitmodules": "gi7eba", "gitattributes": "gi250a"}


_HASHED_SHORT_NAME = re.compile(r"([0-9a-z]{1,6})~([1-9][0-9]*)(.*)", re.DOTALL)


class UnsafePath(ValueError):
    """The reason a path was refused, in words for the skip report."""


def _only_spaces_and_dots(rest: str) -> bool:
    # NTFS ignores trailing dots and spaces and reads "x:stream" as a stream of "x".
    return rest.split(":", 1)[0].strip(". ") == ""


def _is_ntfs_name(name: str, dotted: str, short_prefix: str | None) -> bool:
    """Whether Windows may resolve `name` to `.{dotted}`: the way git's fsck decides it."""
    lower = name.lower()
    if lower.startswith("." + dotted) and _only_spaces_and_dots(lower[len(dotted) + 1:]):
        return True
    # The regular 8.3 short name: six characters, "~", 1-4 ("GITMOD~1"; ".git" has only "git~1").
    digits = "1" if dotted == "git" else "1234"
    stem = dotted[:6]
    if lower.startswith(stem + "~") and lower[len(stem) + 1:len(stem) + 2] in tuple(digits) \
            and _only_spaces_and_dots(lower[len(stem) + 2:]):
        return True
    if short_prefix is None:
        return False
    # The hashed fall-back ("gi7eba~1", "gi7eb~12"): a prefix of it, "~", digits, 8 characters.
    match = _HASHED_SHORT_NAME.fullmatch(lower)
    return bool(match and len(match[1]) + 1 + len(match[2]) == 8 and short_prefix.startswith(match[1])
                and _only_spaces_and_dots(match[3]))


def _is_git_name(name: str) -> bool:
    # HFS+ ignores some code points when comparing names: ".g\u200cit" is ".git" on a Mac.
    plain = name if name.isascii() else _IGNORABLE.sub("", name)
    if not plain.startswith(".") and "~" not in plain:
        return False  # neither a dotted name nor an 8.3 short name: most names, cheaply
    return any(_is_ntfs_name(plain, dotted, prefix) or plain.casefold() == "." + dotted
               for dotted, prefix in _GIT_FILES.items())


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
