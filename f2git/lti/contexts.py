"""What launches taught f2git about each LMS context: its title and the NRPS memberships URL.

A platform names a context's roster service (NRPS `context_memberships_url`) only inside a
launch, so the launch records it here and the roster reader finds it later. One JSON file,
`<data_dir>/lti/contexts.json` (0600), rewritten atomically and only when a value changed.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from f2git.config import Config


@dataclass(frozen=True)
class ContextRecord:
    platform: str  # the [[lti.platforms]] name
    context_id: str
    title: str = ""
    memberships_url: str = ""  # NRPS context_memberships_url; empty: the platform offers none
    seen_at: float = 0.0  # the last launch that changed this record


class ContextStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: "Config") -> "ContextStore":
        return cls(config.server.data_dir / "lti" / "contexts.json")

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: launches fill it again
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _key(platform: str, context_id: str) -> str:
        return f"{platform}/{context_id}"

    def get(self, platform: str, context_id: str) -> ContextRecord | None:
        item = self._read().get(self._key(platform, context_id))
        if not isinstance(item, dict):
            return None
        try:
            return ContextRecord(**item)
        except TypeError:
            return None

    def all(self) -> list[ContextRecord]:
        records = []
        for item in self._read().values():
            try:
                records.append(ContextRecord(**item))
            except TypeError:
                continue
        return records

    def record(self, platform: str, context_id: str, title: str = "", memberships_url: str = "") -> ContextRecord:
        """Remember what a launch said; a launch without a memberships URL keeps the last one."""
        with self._lock:
            data = self._read()
            key = self._key(platform, context_id)
            old = data.get(key) or {}
            new = ContextRecord(platform, context_id, title or old.get("title", ""),
                                memberships_url or old.get("memberships_url", ""), time.time())
            if {k: v for k, v in asdict(new).items() if k != "seen_at"} != \
                    {k: old.get(k) for k in ("platform", "context_id", "title", "memberships_url")}:
                data[key] = asdict(new)
                self._write(data)
            return new

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=".contexts.", dir=self.path.parent)  # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            os.replace(scratch, self.path)
        except BaseException:
            os.unlink(scratch)
            raise
