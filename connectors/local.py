"""A folder on the server's disk, e.g. a checkout an instructor syncs by other means.

Whoever writes that folder may swap any part of it for a link at any moment. So below the
configured root nothing is opened by name from the top: the listing walks directory
descriptors (`os.fwalk`), and a file is opened one component at a time relative to the
root's descriptor with O_NOFOLLOW, then checked to be the very file that was listed.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from .base import Connector, Entry, Listing, Skipped, SourceError

_NO_LINKS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not block the open.
_FILE_FLAGS = _NO_LINKS | os.O_NONBLOCK
_DIR_FLAGS = _NO_LINKS | os.O_DIRECTORY


@dataclass
class LocalOptions:
    path: Path  # resolved against the config file's folder by the config loader


@dataclass(frozen=True)
class _Listed:
    """Entry.ref: where the file was and which file it was when listed."""

    parts: tuple[str, ...]
    device: int
    inode: int


def _is_folder(name: str, folder_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False  # gone or unreadable: reported with the files


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

    def list(self, state: Mapping[str, Any]) -> Listing:
        listing = Listing()

        def failed(error: OSError) -> None:
            # An unreadable folder means an incomplete listing: never read it as deletions.
            where = error.filename if isinstance(error.filename, str) else "a folder"
            raise SourceError(f"cannot read {where}: {error.strerror}")

        # fwalk never descends into a link, but lists a link to a folder among the folders.
        for folder, dirs, files, folder_fd in os.fwalk(".", dir_fd=self._root(), onerror=failed):
            links = [name for name in dirs if not _is_folder(name, folder_fd)]
            dirs[:] = sorted(name for name in dirs if name not in links)
            for name in sorted(files + links):
                relative = os.path.normpath(os.path.join(folder, name)).replace(os.sep, "/")
                try:
                    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                except OSError as error:
                    failed(error)
                if not stat.S_ISREG(info.st_mode):
                    listing.skipped.append(Skipped(relative, "not a regular file (links are not followed)"))
                    continue
                # mtime and size: an unchanged tree is never re-read.
                version = f"{info.st_mtime_ns}:{info.st_size}"
                ref = _Listed(tuple(relative.split("/")), info.st_dev, info.st_ino)
                listing.entries.append(Entry(relative, info.st_size, version, ref=ref))
        return listing

    def open(self, entry: Entry) -> BinaryIO:
        listed: _Listed = entry.ref
        opened: list[int] = []
        try:
            folder = self._root()
            for part in listed.parts[:-1]:
                folder = os.open(part, _DIR_FLAGS, dir_fd=folder)
                opened.append(folder)
            fd = os.open(listed.parts[-1], _FILE_FLAGS, dir_fd=folder)
        except OSError as error:
            raise SourceError(f"cannot read {entry.path}: {self._why(error)}") from None
        finally:
            for descriptor in opened:
                os.close(descriptor)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (listed.device, listed.inode):
            os.close(fd)
            raise SourceError(f"cannot read {entry.path}: it was replaced while the sync ran; sync again")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    @staticmethod
    def _why(error: OSError) -> str:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            return "a link was put on its path while the sync ran (links are not followed)"
        return error.strerror or str(error)

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        super().close()
