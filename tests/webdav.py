"""A folder for a file server to serve (`rclone serve webdav`, nginx, the local backends):
`write_tree` makes it hold exactly the files a test publishes, as an instructor's edits do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping


def write_tree(root: str | os.PathLike, files: Mapping[str, bytes]) -> None:
    """Make `root` hold exactly `files`; files whose bytes are unchanged are not rewritten,
    so their modification time (and a server's ETag) stays as an unedited file's would.
    What is no longer wanted goes first, so a file may become a folder of the same name."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wanted = {root / path for path in files}
    for folder, dirs, names in os.walk(root, topdown=False):
        for name in names:
            if Path(folder, name) not in wanted:
                os.unlink(os.path.join(folder, name))
        for name in dirs:
            path = Path(folder, name)
            if not any(p.is_relative_to(path) for p in wanted):
                os.rmdir(path)
    for path, content in files.items():
        target = root / path
        if target.is_file() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
