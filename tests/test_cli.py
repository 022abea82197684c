"""The CLI as scripts use it: --json lines, exit codes, status, check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def f2git(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def setup(tmp_path):
    good, broken = tmp_path / "good", tmp_path / "broken"
    good.mkdir()
    (good / "a.txt").write_text("a")
    (good / "b.txt").write_text("b")
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n'
                      f'[courses.good]\nsource = "local"\npath = "{good}"\n'
                      f'[courses.broken]\nsource = "local"\npath = "{broken}"\n')
    return config, good, broken


def test_sync_json_lines_and_exit_status(setup):
    config, good, broken = setup
    result = f2git(config, "sync", "--json")
    assert result.returncode == 1  # one course failed
    lines = {d["course"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert set(lines["good"]) == {"course", "ok", "changed", "commit", "added", "modified", "deleted", "skipped"}
    assert lines["good"]["ok"] and lines["good"]["added"] == 2 and len(lines["good"]["commit"]) == 40
    assert lines["broken"] == {"course": "broken", "ok": False, "error": lines["broken"]["error"]}
    assert "does not exist" in lines["broken"]["error"]

    only_good = f2git(config, "sync", "good", "--json")
    assert only_good.returncode == 0
    assert json.loads(only_good.stdout) | {"commit": None} == {
        "course": "good", "ok": True, "changed": False, "commit": None, "added": 0, "modified": 0,
        "deleted": 0, "skipped": []}


def test_unknown_course_is_a_usage_error(setup):
    config, _, _ = setup
    result = f2git(config, "sync", "nope")
    assert result.returncode == 2 and "no course named 'nope'" in result.stderr


def test_refused_mass_delete_counts_as_failed(setup):
    config, good, _ = setup
    for i in range(8):
        (good / f"f{i}.txt").write_text(str(i))
    assert f2git(config, "sync", "good").returncode == 0
    for i in range(8):
        (good / f"f{i}.txt").unlink()
    refused = f2git(config, "sync", "good", "--json")
    assert refused.returncode == 1 and "allow-mass-delete" in json.loads(refused.stdout)["error"]
    allowed = f2git(config, "sync", "good", "--json", "--allow-mass-delete")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["deleted"] == 8


def test_status_reports_last_error_and_keeps_the_commit(setup):
    config, good, _ = setup
    f2git(config, "sync")
    status = f2git(config, "status", "--json")
    records = {d["course"]: d for d in map(json.loads, status.stdout.splitlines())}
    assert status.returncode == 1
    assert records["good"]["commit"] and records["good"]["last_error"] is None
    assert records["broken"]["commit"] is None and "does not exist" in records["broken"]["last_error"]
    text = f2git(config, "status", "good").stdout
    assert "last check:" in text and records["good"]["commit"] in text


def test_link_and_check(setup):
    config, _, _ = setup
    f2git(config, "sync", "good")  # a link's --path must be a file of the course's snapshot
    link = f2git(config, "link", "good", "--path", "a.txt", "--hub", "https://hub.example.edu")
    assert link.returncode == 0
    assert link.stdout.startswith("https://hub.example.edu/hub/user-redirect/git-pull?repo=")
    check = f2git(config, "check")
    assert check.returncode == 1
    assert "good: ok (2 released files)" in check.stdout and "broken: FAILED" in check.stdout
