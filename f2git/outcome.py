"""What a sync reports: its progress while it runs and its outcome (the `sync --json` line),
shared by the engine (snapshot.py) that makes them and the status, metrics, server and CLI
that read them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connectors import Skipped
from connectors.base import Traffic

LISTED_PATHS = 200  # paths per kind (and skipped files) kept in a result, the rest counted


@dataclass
class Progress:
    course: str
    phase: str  # listing | downloading | writing | finished
    done: int = 0
    total: int = 0
    path: str | None = None


@dataclass
class SyncResult:
    course: str
    ok: bool = False
    changed: bool = False
    commit: str | None = None
    added: int = 0
    modified: int = 0
    deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # the first LISTED_PATHS of them
    skipped_total: int = 0
    error: str | None = None
    mass_delete_refused: int | None = None  # the sync stopped: it would have deleted this many files
    auth_failed: bool = False
    next_release: datetime | None = None
    withheld: dict[str, int] = field(default_factory=dict)  # Listing.withheld: reason → count
    paths: dict[str, list[str]] = field(default_factory=lambda: {"added": [], "modified": [], "deleted": []})
    duration: float = 0.0
    dry_run: bool = False
    mirror_error: str | None = None  # the snapshot is fine; pushing it to `mirror` failed (retried next sync)
    backup_error: str | None = None  # the snapshot is fine; saving it to `backup_dir` failed (retried next sync)
    source_traffic: Traffic = field(default_factory=Traffic)  # HTTP requests and bytes (for metrics)
    status_error: str | None = None  # why this outcome could not be written to the status file
    listing: str = ""  # how the source was listed: "whole", or "changes" only (Connector.list_changes)
    held: list[str] = field(default_factory=list)  # retracted files the source still offers, held back
    on_hold: dict | None = None  # the course is held after a rollback (f2git/holds.py): not synced

    def to_json(self) -> dict:
        if not self.ok:
            failed = {"course": self.course, "ok": False, "error": self.error}
            if self.mass_delete_refused is not None:
                failed["mass_delete_refused"] = self.mass_delete_refused
            return failed
        data = {"course": self.course, "ok": True, "changed": self.changed, "commit": self.commit,
                "added": self.added, "modified": self.modified, "deleted": self.deleted,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}
        if self.skipped_total > len(self.skipped):  # the list was cut at LISTED_PATHS
            data["skipped_total"] = self.skipped_total
        if self.mirror_error:
            data["mirror_error"] = self.mirror_error
        if self.backup_error:
            data["backup_error"] = self.backup_error
        if self.status_error:
            data["status_error"] = self.status_error
        if self.withheld:
            data["withheld"] = self.withheld
        if self.held:
            data["held"] = self.held
        if self.on_hold is not None:
            data["on_hold"] = self.on_hold
        if self.dry_run:
            data["dry_run"] = True
            data["paths"] = self.paths
        return data
