"""A folder on the server's disk, e.g. a checkout an instructor syncs by other means."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from .base import Connector, Entry, Listing, Skipped, SourceError


@dataclass
class LocalOptions:
    path: Path  # resolved against the config file's folder by the config loader


class LocalConnector(Connector):
    source = "local"
    label = "local folder"
    Options = LocalOptions

    @classmethod
    def describe(cls, options: LocalOptions) -> str:
        return str(options.path)

    def list(self, state: Mapping[str, Any]) -> Listing:
        root = Path(self.options.path)
        if not root.is_dir():
            raise SourceError(f"local folder {root} does not exist or is not a folder")
        listing = Listing()

        def failed(error: OSError) -> None:
            # An unreadable folder means an incomplete listing: never read it as deletions.
            raise SourceError(f"cannot read {error.filename}: {error.strerror}")

        for folder, dirs, files in os.walk(root, onerror=failed):
            # os.walk lists a link to a folder among `dirs` and does not follow it: report it as skipped.
            links = [name for name in dirs if os.path.islink(os.path.join(folder, name))]
            dirs[:] = sorted(name for name in dirs if name not in links)
            for name in sorted(files + links):
                full = os.path.join(folder, name)
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                try:
                    info = os.lstat(full)
                except OSError as error:
                    failed(error)
                if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
                    listing.skipped.append(Skipped(relative, "not a regular file (links are not followed)"))
                    continue
                # mtime and size: an unchanged tree is never re-read.
                version = f"{info.st_mtime_ns}:{info.st_size}"
                listing.entries.append(Entry(relative, info.st_size, version, ref=full))
        return listing

    def open(self, entry: Entry) -> BinaryIO:
        try:
            # O_NOFOLLOW: a file swapped for a link after listing is not followed.
            fd = os.open(entry.ref, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            raise SourceError(f"cannot read {entry.path}: {error.strerror}") from None
        return os.fdopen(fd, "rb")
