"""What changed below a local folder since a listing, from Linux inotify: lets a long-running
server re-read only the files an event named instead of the whole tree (issue 14.5).

A journal is born with a full listing, which watches each folder before reading it, so a
file created during the walk is either listed or named by an event. Afterwards every event
names a path. A journal vouches for a "since" token only when it can be sure of it; it
steps aside (a full listing follows) when:
- a folder appeared, went, moved or changed mode (the walk's shape changed);
- the kernel lost events (queue overflow) or dropped a watch (unmount, folder gone);
- it is older than FULL_LISTING_EVERY (a net under what inotify cannot see: writes through
  a shared mmap, files changed on another machine);
- the folder is on a file system whose changes may happen elsewhere (NFS, FUSE, overlay
  lower layers): only local disk types get a journal at all.
A file with more than one link can be written under another name that no watch sees: such
files are re-read at every listing.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict

log = logging.getLogger("f2git.sync")

try:
    from inotify_simple import INotify, flags
except (ImportError, OSError):  # not Linux: every listing is a full one
    INotify = None

FULL_LISTING_EVERY = 300.0  # s a journal answers before a full listing re-checks everything
MAX_JOURNALS = 64  # each holds an inotify instance (Linux allows 128 per user by default)
# File systems where every change to a file passes through this kernel, so inotify sees it.
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "jfs",
                                "bcachefs", "reiserfs"})

if INotify is not None:
    _WATCH = (flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.CREATE | flags.DELETE | flags.MOVED_FROM
              | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR | flags.EXCL_UNLINK)
    _LOST = flags.Q_OVERFLOW | flags.IGNORED | flags.UNMOUNT | flags.DELETE_SELF | flags.MOVE_SELF


class Unavailable(Exception):
    """This folder cannot have a journal (file system type, watch limits)."""


def _file_system_types() -> dict[int, str]:
    """st_dev → file system type of every mount this process sees."""
    types = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                major, minor = fields[2].split(":")
                kind = fields[fields.index("-") + 1]
                types[os.makedev(int(major), int(minor))] = kind
    except (OSError, ValueError, IndexError):
        pass
    return types


class Journal:
    """The paths below one folder that events named, numbered in order."""

    def __init__(self, root_device: int):
        if INotify is None:
            raise Unavailable("inotify is not available")
        self._check_device(root_device, {})
        try:
            self._inotify = INotify(nonblocking=True)
        except OSError as error:  # EMFILE: the per-user instance limit
            raise Unavailable(f"inotify: {error.strerror}") from None
        self.id = uuid.uuid4().hex
        self.born = time.monotonic()
        self.lock = threading.Lock()
        self._folders: dict[int, str] = {}  # watch descriptor → folder prefix ("" or "a/b/")
        self._devices = {root_device}
        self._seq = 0
        self._dirty: dict[str, int] = {}  # path → number of the last event that named it
        self._horizon = 0  # changes up to this number are forgotten
        self._linked: set[str] = set()  # files with other links: re-read at every listing
        self._lost: str | None = None  # why the journal can no longer vouch

    @staticmethod
    def _check_device(device: int, types: dict[int, str]) -> None:
        kind = (types or _file_system_types()).get(device)
        if kind not in LOCAL_FILE_SYSTEMS:
            raise Unavailable(f"file system {kind or 'unknown'} may change without telling this kernel")

    @property
    def token(self) -> str:
        """Names this moment: a later changes_since(token) answers what happened after it."""
        return f"{self.id}:{self._seq}"

    def watch(self, folder_fd: int, prefix: str) -> None:
        """Watch an open folder (before reading it). Raises Unavailable."""
        device = os.fstat(folder_fd).st_dev
        if device not in self._devices:  # another file system mounted below the root
            self._check_device(device, {})
            self._devices.add(device)
        try:
            # The descriptor's /proc link names exactly the folder opened, never one swapped in since.
            descriptor = self._inotify.add_watch(f"/proc/self/fd/{folder_fd}", _WATCH)
        except OSError as error:  # ENOSPC: fs.inotify.max_user_watches reached
            raise Unavailable(f"inotify watch: {error.strerror}") from None
        except ValueError:  # closed meanwhile: evicted by newer journals of other courses
            raise Unavailable("evicted") from None
        self._folders[descriptor] = prefix

    @property
    def lost(self) -> str | None:
        """Why the journal can no longer vouch for any token, if so."""
        return self._lost

    def linked(self, path: str) -> None:
        self._linked.add(path)

    def changes_since(self, token: str) -> tuple[list[str], str] | None:
        """The paths events named after `token`, and the token of now; None when unsure."""
        journal, _, number = token.partition(":")
        if journal != self.id or not number.isdigit():
            return None
        since = int(number)
        with self.lock:
            self._drain()
            if self._lost is None and time.monotonic() - self.born > FULL_LISTING_EVERY:
                self._lost = "due for its periodic full listing"
            if self._lost is not None or since < self._horizon or since > self._seq:
                return None
            # Forget what every later token has seen; a failed sync asks again from `since`.
            self._dirty = {path: seq for path, seq in self._dirty.items() if seq > since}
            self._horizon = since
            return [*self._dirty.keys() - self._linked, *self._linked], self.token

    def _drain(self) -> None:
        if self._lost is not None:
            return
        try:
            events = self._inotify.read(timeout=0)
        except (OSError, ValueError) as error:  # ValueError: closed by eviction meanwhile
            self._lost = f"inotify read: {error}"
            return
        for event in events:
            prefix = self._folders.get(event.wd)
            if event.mask & _LOST or prefix is None:
                self._lost = "events were lost or a watched folder went"
            elif event.mask & flags.ISDIR or not event.name:
                self._lost = "a folder was created, removed, moved or changed"
            else:
                self._seq += 1
                self._dirty[prefix + event.name] = self._seq

    def close(self) -> None:
        with self.lock:  # never while another thread drains it
            self._lost = "closed"
            self._inotify.close()


_journals: OrderedDict[tuple, Journal] = OrderedDict()
_registry_lock = threading.Lock()


def start(key: tuple, root_device: int) -> Journal | None:
    """A new journal for `key` (course and folder identity), replacing the old; None when unavailable."""
    with _registry_lock:
        old = _journals.pop(key, None)
        if old is not None:
            old.close()
        try:
            journal = Journal(root_device)
        except Unavailable as why:
            log.debug("no change journal for %s: %s", key[0], why)
            return None
        _journals[key] = journal
        while len(_journals) > MAX_JOURNALS:
            _, evicted = _journals.popitem(last=False)
            evicted.close()
        return journal


def drop(key: tuple, journal: Journal) -> None:
    """Forget a journal that could not be completed (its listing failed or a watch could not be added)."""
    with _registry_lock:
        if _journals.get(key) is journal:
            del _journals[key]
        journal.close()


def find(key: tuple) -> Journal | None:
    with _registry_lock:
        journal = _journals.get(key)
        if journal is not None:
            _journals.move_to_end(key)
        return journal
