from __future__ import annotations

from pathlib import Path

import pytest

import connectors
from f2git.config import parse
from tests import memsource


@pytest.fixture
def memory_source(monkeypatch):
    """Makes `source = "memory"` available; returns a function creating a named bucket."""
    monkeypatch.setitem(connectors.SOURCES, "memory", "tests.memsource:MemoryConnector")
    created = []

    def bucket(name: str = "course", files: dict[str, bytes] | None = None) -> memsource.Bucket:
        memsource.BUCKETS[name] = memsource.Bucket(files=dict(files or {}))
        created.append(name)
        return memsource.BUCKETS[name]

    yield bucket
    for name in created:
        memsource.BUCKETS.pop(name, None)


@pytest.fixture
def make_config(tmp_path):
    """A Config from a dict shaped like the TOML file, with data_dir in tmp_path."""

    def make(courses: dict, server: dict | None = None, env: dict | None = None):
        data = {"server": {"data_dir": str(tmp_path / "data"), **(server or {})}, "courses": courses}
        return parse(data, tmp_path / "f2git.toml", env or {})

    return make
