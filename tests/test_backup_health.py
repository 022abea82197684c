"""A failing backup is visible wherever a course's health shows, and /healthz tells strangers
nothing but "ok" or "degraded".

The backup_dir here lies under a regular file: writes fail with "Not a directory" even for
root (CI runs as root, which ignores permission bits).
"""
from __future__ import annotations

import json

import pytest

from f2git import cli
from tests.repohelpers import SourceFolder, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import RunningServer, config_factory

COURSE = "cs101"
FETCH = "fetch-tok-3vQ8"
MANAGE = "manage-tok-9xW2"


@pytest.fixture(autouse=True)
def tokens(monkeypatch):
    monkeypatch.setenv("F2GIT_FETCH", FETCH)
    monkeypatch.setenv("F2GIT_MANAGE", MANAGE)


@pytest.fixture
def course(tmp_path):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("README.md", "# CS 101\n")
    return {COURSE: {"source": "local", "path": str(instructor.path), "schedule": 0}}


def unwritable_backup_dir(tmp_path):
    blocker = tmp_path / "backup-disk"
    blocker.write_text("a file where the backup folder's parent should be\n")
    return blocker / "f2git"


def token_server(tmp_path, courses, **server):
    env = {"F2GIT_FETCH": FETCH, "F2GIT_MANAGE": MANAGE}
    return RunningServer(config_factory(tmp_path, courses, env=env, auth="token", tokens_env="F2GIT_FETCH",
                                        manage_tokens_env="F2GIT_MANAGE", refresh_ttl=0, **server))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_config(tmp_path, courses, backup_dir) -> str:
    path = tmp_path / "f2git.toml"
    lines = [f'[server]\ndata_dir = "{tmp_path / "data"}"\nbackup_dir = "{backup_dir}"']
    for name, keys in courses.items():
        lines.append(f"[courses.{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items()))
    path.write_text("\n".join(lines))
    return str(path)


def test_a_failing_backup_shows_in_healthz_api_metrics_dashboard_status_and_check(tmp_path, course, capsys):
    backup_dir = unwritable_backup_dir(tmp_path)
    with token_server(tmp_path, course, backup_dir=str(backup_dir)) as server:
        # before any sync: the folder itself refuses writes
        code, _, body = server.request("GET", "/healthz", headers=bearer(MANAGE))
        assert code == 503 and b"backup_dir: cannot write to" in body and b"Not a directory" in body, body

        code, _, body = server.request("POST", f"/api/courses/{COURSE}/refresh", headers=bearer(MANAGE))
        assert code == 200
        synced = json.loads(body)
        assert synced["ok"] and "Not a directory" in synced["backup_error"], synced  # served, not backed up

        code, _, body = server.request("GET", f"/api/courses/{COURSE}", headers=bearer(MANAGE))
        record = json.loads(body)
        assert record["commit"] == synced["commit"] and record["backup_error"] == synced["backup_error"]

        code, _, body = server.request("GET", "/healthz", headers=bearer(MANAGE))
        assert code == 503 and f"course {COURSE}: backup to {backup_dir}".encode() in body, body

        code, _, metrics = server.request("GET", "/metrics", headers=bearer(MANAGE))
        assert code == 200 and f'f2git_course_backup_ok{{course="{COURSE}"}} 0.0'.encode() in metrics

        code, _, page = server.request("GET", f"/courses/{COURSE}", headers=bearer(MANAGE))
        assert code == 200 and b"its backup failed" in page and b"Failing" in page, page[:2000]

        # a student reads none of it; a stranger reads "degraded" and nothing more
        code, _, body = server.request("GET", f"/api/courses/{COURSE}", headers=bearer(FETCH))
        assert code == 200 and "backup_error" not in json.loads(body)
        for headers in ({}, bearer(FETCH), bearer("wrong")):
            code, _, body = server.request("GET", "/healthz", headers=headers)
            assert (code, body) == (503, b"degraded\n")

    config_path = write_config(tmp_path, course, backup_dir)
    capsys.readouterr()
    assert cli.main(["--config", config_path, "status"]) == 1
    captured = capsys.readouterr()
    assert "backup:      FAILED: backup to" in captured.out and "backup_dir: cannot write to" in captured.err
    assert cli.main(["--config", config_path, "status", "--json"]) == 1
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["backup_error"] and "Not a directory" in line["backup_dir_error"]
    assert cli.main(["--config", config_path, "check"]) == 1
    assert f"backup_dir: FAILED: cannot write to {backup_dir}" in capsys.readouterr().out


def test_a_backup_that_works_again_clears_the_warning(tmp_path, course, capsys):
    backup_dir = unwritable_backup_dir(tmp_path)
    with token_server(tmp_path, course, backup_dir=str(backup_dir)) as server:
        code, _, body = server.request("POST", f"/api/courses/{COURSE}/refresh", headers=bearer(MANAGE))
        assert json.loads(body)["backup_error"]
        backup_dir.parent.unlink()  # the disk is back
        code, _, body = server.request("POST", f"/api/courses/{COURSE}/refresh", headers=bearer(MANAGE))
        assert code == 200 and "backup_error" not in json.loads(body)
        assert (backup_dir / f"{COURSE}.git" / "HEAD").is_file()
        metrics = server.request("GET", "/metrics", headers=bearer(MANAGE))[2]
        assert f'f2git_course_backup_ok{{course="{COURSE}"}} 1.0'.encode() in metrics
        server.call(lambda: setattr(server.server.refresher, "_disk_checked", float("-inf")))
        assert server.request("GET", "/healthz")[::2] == (200, b"ok")
    config_path = write_config(tmp_path, course, backup_dir)
    assert cli.main(["--config", config_path, "status"]) == 0
    assert "backup" not in capsys.readouterr().out


def test_healthz_names_no_course_and_no_path_to_strangers(tmp_path, course):
    """The data dir refuses writes: managers read where, anyone else only that it is degraded."""
    with token_server(tmp_path, course) as server:
        code, _, body = server.request("POST", f"/api/courses/{COURSE}/refresh", headers=bearer(MANAGE))
        assert json.loads(body)["ok"]
        status_dir = tmp_path / "data" / "status"
        for item in status_dir.iterdir():
            item.unlink()
        status_dir.rmdir()
        status_dir.write_text("not a folder\n")
        code, _, body = server.request("GET", "/healthz", headers=bearer(MANAGE))
        assert code == 503 and str(status_dir).encode() in body
        for headers in ({}, bearer(FETCH), {"Authorization": "Basic !!"}):
            code, answer_headers, body = server.request("GET", "/healthz", headers=headers)
            assert (code, body) == (503, b"degraded\n")
            assert COURSE.encode() not in body and str(tmp_path).encode() not in body
            assert answer_headers["Cache-Control"] == "no-store"
