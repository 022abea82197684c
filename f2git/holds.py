"""A course on hold: after a rollback (f2git/release.py) no sync publishes over the snapshot
the instructor chose, until they resume the course. One small JSON file per held course in
<data_dir>/holds/<course>.json (who, when, why); its absence means the course syncs."""
from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config


def _path(config: "Config", name: str):
    return config.server.data_dir / "holds" / f"{name}.json"


def read(config: "Config", name: str) -> dict | None:
    """The hold of the course ({"time", "who", "reason", "commit"}), or None when it syncs."""
    try:
        data = json.loads(_path(config, name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"reason": "the hold file cannot be read; resume the course to sync again"}
    return data if isinstance(data, dict) else {}


def hold(config: "Config", name: str, record: dict) -> None:
    target = _path(config, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(scratch, target)


def resume(config: "Config", name: str) -> bool:
    """Lift the hold; False when the course was not held."""
    try:
        _path(config, name).unlink()
    except FileNotFoundError:
        return False
    return True
