"""What a student without pullhook reads when a retract left their copy behind.

A late joiner (a shallow clone that starts at a rewritten snapshot), or anyone after a
rewritten root, cannot merge the new history: nbgitpuller then fails its merge and offers
"Backup and resync". Before that, their fetch carries one progress line (sideband band 2,
which git prints as `remote: …` and nbgitpuller streams to its log) that says what happened
and what to do. pullhook announces that it bridges the histories itself (BRIDGE_HEADER).

The front door cannot see a student's copy, so it tells every browser once (a cookie per course
and retract) for DOOR_DAYS after a retract, unless the hub's links go through pullhook.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from f2git import release

if TYPE_CHECKING:
    from f2git.config import Config

BRIDGE_HEADER = "X-F2git-Bridge"
DOOR_DAYS = 28  # a student who clicks less often still reads nbgitpuller's log line
DOOR_COOKIE = "f2git-retract-"  # + course name (a-z0-9._-): the retract this browser was told of
_NAMED = re.compile(rb"[0-9a-f]{4}(shallow|have) ([0-9a-f]{40})")
_cache: dict[tuple[str, str], tuple[tuple, dict]] = {}


def _info(config: "Config", course: str) -> dict:
    """The course's rewrite record, read again only when its file changed."""
    path = release.rewrites_path(config, course)
    try:
        stat = path.stat()
    except OSError:
        return {}
    key, stamp = (str(path), course), (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, release.rewrite_info(config, course))
        _cache[key] = cached
    return cached[1]


def notice(config: "Config", course: str, body: bytes, bridged: bool) -> str | None:
    """The line for this fetch, or None when its client can merge (or pullhook bridges)."""
    if bridged or not release.rewritten(config, course):
        return None
    info = _info(config, course)
    old = info.get("map") or {}
    named = [(kind, oid.decode()) for kind, oid in _NAMED.findall(body)]
    stranded = any(kind == b"shallow" and oid in old for kind, oid in named) or \
        (info.get("root") and any(oid in old for _, oid in named))
    if not stranded:
        return None
    when = datetime.fromtimestamp(info.get("last") or 0, timezone.utc).strftime("%-d %b %H:%M UTC")
    return (f"f2git: on {when} your instructor took back files of course {course} that were released by"
            " mistake, and its history was rewritten. Your copy began at a snapshot that no longer exists,"
            " so it cannot be updated in place: choose 'Backup and resync' - your folder is kept as a"
            " backup with your edits, and you get a fresh copy.")


def door_notice(config: "Config", course: str, told: str | None, now: float) -> dict | None:
    """The course's rewrite record when the front door should tell this browser of its last
    retract (`told`: the browser's cookie), else None."""
    if config.hub.pullhook or not release.rewritten(config, course):
        return None
    info = _info(config, course)
    last = info.get("last")
    if not isinstance(last, (int, float)) or now - last > DOOR_DAYS * 86400 or told == door_stamp(info):
        return None
    return info


def door_stamp(info: dict) -> str:
    """What the door's cookie holds once a browser was told of the retract in `info`."""
    return f"{float(info.get('last') or 0):.6f}"  # two retracts in one second differ


def insert(chunk: bytes, message: str, sideband: bool) -> tuple[bytes, int]:
    """`chunk` (the start of an upload-pack answer) with `message` as a band-2 pkt-line right
    where the pack stream begins; unchanged when that is not in it. Returns it and the bytes added."""
    data = b"\x02" + message.encode() + b"\n"
    line = b"%04x" % (len(data) + 4) + data
    for marker in (b"000dpackfile\n", *((b"0008NAK\n",) if sideband else ())):
        at = chunk.find(marker)
        if at >= 0:
            at += len(marker)
            return chunk[:at] + line + chunk[at:], len(line)
    return chunk, 0
