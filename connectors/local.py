"""A folder on the server's disk, e.g. a checkout an instructor syncs by other means.

Whoever writes that folder may swap any part of it for a link at any moment. So below the
configured root nothing is opened by name from the top: the listing walks directory
descriptors opened with O_NOFOLLOW, and a file is opened one component at a time relative to
the root's descriptor with O_NOFOLLOW, then checked to be the very file that was listed.

In a long-running server a change journal (connectors/_journal.py) remembers which files
events named since a listing, so list_changes() re-reads only those.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from . import _journal
from .base import Connector, Entry, EntryGone, Listing, Skipped, SourceError

_NO_LINKS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not block the open.
_FILE_FLAGS = _NO_LINKS | os.O_NONBLOCK
_DIR_FLAGS = _NO_LINKS | os.O_DIRECTORY

log = logging.getLogger("f2git.sync")
_REPOSITORY_FOLDER = "a git repository's own folder: never published (the files beside it are)"
_GONE = "gone"  # the version of a file that went between being seen and being looked at; never stored


@dataclass
class LocalOptions:
    path: Path  # resolved against the config file's folder by the config loader


@dataclass(frozen=True)
class _Listed:
    """Entry.ref: where the file was and which file it was when listed."""

    parts: tuple[str, ...]
    device: int
    inode: int


class LocalConnector(Connector):
    source = "local"
    label = "local folder"
    Options = LocalOptions

    @classmethod
    def describe(cls, options: LocalOptions) -> str:
        return str(options.path)

    _root_fd: int | None = None

    def _root(self) -> int:
        """A descriptor of the configured folder, opened once (the admin's path may be a link)."""
        if self._root_fd is None:
            root = Path(self.options.path)
            try:
                self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                raise SourceError(f"local folder {root} does not exist or is not a folder") from None
        return self._root_fd

    def _journal_key(self) -> tuple:
        info = os.fstat(self._root())
        return (self.course, info.st_dev, info.st_ino)

    def list(self, state: Mapping[str, Any]) -> Listing:
        listing = Listing()
        key = self._journal_key()
        journal = _journal.start(key, key[1])
        # Each folder is watched before it is read: nothing created meanwhile goes unseen.
        token = journal.token if journal else None
        try:
            self._walk(listing, journal)
        except BaseException:
            if journal is not None:
                _journal.drop(key, journal)
            raise
        if journal is not None and _journal.find(key) is journal:
            listing.state, listing.follow_up = {"journal": token}, True
        return listing

    def _walk(self, listing: Listing, journal: "_journal.Journal | None") -> None:
        """Every file below the root, one folder descriptor at a time (never a path from the top)."""
        pending = [("", os.dup(self._root()))]
        try:
            while pending:
                prefix, folder_fd = pending.pop()
                try:
                    if journal is not None:
                        try:
                            journal.watch(folder_fd, prefix)
                        except _journal.Unavailable as why:
                            log.debug("%s: no change journal: %s", self.course, why)
                            _journal.drop(self._journal_key(), journal)
                            journal = None
                    try:
                        with os.scandir(folder_fd) as found:
                            children = sorted((item.name, item.is_dir(follow_symlinks=False)) for item in found)
                    except OSError as error:
                        self._unreadable(prefix, error)
                    folders = []
                    for name, is_folder in children:
                        if is_folder and name.casefold() == ".git":
                            # The course is the instructor's checkout: one line for its history, which
                            # students never get, instead of one per file (and no walk through it).
                            listing.skipped.append(Skipped(prefix + name + "/", _REPOSITORY_FOLDER))
                            continue
                        if is_folder:
                            try:
                                folders.append((prefix + name + "/", os.open(name, _DIR_FLAGS, dir_fd=folder_fd)))
                            except OSError as error:
                                # Removed, or swapped for a link or a file, since it was seen: this
                                # listing sees the folder as it is now, without it.
                                if error.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                                    self._unreadable(prefix + name, error)
                            continue
                        try:
                            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                        except FileNotFoundError:
                            # Seen a moment ago: rewritten by delete-and-create, or removed. Listed
                            # as gone, so the engine keeps its last content until the next sync.
                            listing.entries.append(Entry(prefix + name, None, _GONE, ref=_Listed(
                                tuple((prefix + name).split("/")), -1, -1)))
                            continue
                        except OSError as error:
                            self._unreadable(prefix + name, error)
                        self._add(listing, prefix + name, info, journal)
                    pending.extend(reversed(folders))
                finally:
                    os.close(folder_fd)
        finally:
            for _, folder_fd in pending:
                os.close(folder_fd)

    @staticmethod
    def _unreadable(where: str, error: OSError) -> None:
        # An unreadable folder means an incomplete listing: never read it as deletions.
        raise SourceError(f"cannot read {where or 'the folder'}: {error.strerror}")

    @staticmethod
    def _add(listing: Listing, relative: str, info: os.stat_result, journal: "_journal.Journal | None") -> None:
        if not stat.S_ISREG(info.st_mode):
            listing.skipped.append(Skipped(relative, "not a regular file (links are not followed)"))
            return
        if journal is not None and info.st_nlink > 1:
            journal.linked(relative)  # writable under a name no watch sees
        # mtime and size: an unchanged tree is never re-read.
        version = f"{info.st_mtime_ns}:{info.st_size}"
        ref = _Listed(tuple(relative.split("/")), info.st_dev, info.st_ino)
        listing.entries.append(Entry(relative, info.st_size, version, ref=ref))

    def list_changes(self, state: Mapping[str, Any]) -> Listing | None:
        token = state.get("journal")
        journal = _journal.find(self._journal_key()) if isinstance(token, str) else None
        found = journal.changes_since(token) if journal is not None else None
        if found is None:
            log.debug("%s: listing the whole folder: %s", self.course,
                      journal and journal.lost or "no change journal for the last listing")
            return None
        touched, token = found
        listing = Listing(state={"journal": token}, touched=set(touched), follow_up=True)
        for relative in sorted(touched):
            try:
                info = self._stat(relative)
            except OSError:
                return None  # something on its way is no longer a folder: list everything
            if info is not None:
                self._add(listing, relative, info, journal)
        return listing

    def _stat(self, relative: str) -> os.stat_result | None:
        """lstat of a path below the root, opening each folder with O_NOFOLLOW; None when gone."""
        parts = relative.split("/")
        opened: list[int] = []
        try:
            folder = self._root()
            for part in parts[:-1]:
                folder = os.open(part, _DIR_FLAGS, dir_fd=folder)
                opened.append(folder)
            return os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            for descriptor in opened:
                os.close(descriptor)

    def open(self, entry: Entry) -> BinaryIO:
        listed: _Listed = entry.ref
        if entry.version == _GONE:
            raise EntryGone("removed while the sync ran")
        opened: list[int] = []
        try:
            folder = self._root()
            for part in listed.parts[:-1]:
                folder = os.open(part, _DIR_FLAGS, dir_fd=folder)
                opened.append(folder)
            fd = os.open(listed.parts[-1], _FILE_FLAGS, dir_fd=folder)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise EntryGone(self._gone(error)) from None
            raise SourceError(f"cannot read {entry.path}: {error.strerror or error}") from None
        finally:
            for descriptor in opened:
                os.close(descriptor)
        info = os.fstat(fd)
        # Only the very file listed is read: its version token describes what is stored.
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (listed.device, listed.inode):
            os.close(fd)
            raise EntryGone("replaced while the sync ran")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    @staticmethod
    def _gone(error: OSError) -> str:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            return "a link was put on its path while the sync ran (links are not followed)"
        return "removed while the sync ran"

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        super().close()
