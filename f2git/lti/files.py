"""The LTI state files (contexts, requests, course store): written whole, private, atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`: a reader sees the old file or the new one, never half; mode 0600."""
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise
