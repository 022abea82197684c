"""`/metrics`: the counters move as syncs and student clicks happen, and match what the source saw."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from f2git import status
from f2git.metrics import Metrics
from f2git.server.app import make_app
from f2git.server.auth import NoAuth
from f2git.snapshot import sync_course
from tests.httpserver import FileServer
from tests.repohelpers import git, isolated_git
from tests.serverhelpers import RunningServer, config_factory

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n' * 40


@pytest.fixture(autouse=True)
def _git(monkeypatch):
    isolated_git(monkeypatch)


@pytest.fixture
def files():
    with FileServer() as server:
        server.put("/notes.ipynb", NOTEBOOK)
        yield server


def scrape(server: RunningServer) -> dict[tuple, float]:
    """{(sample name, label items…): value} of one scrape."""
    status_code, headers, body = server.request("GET", "/metrics")
    assert status_code == 200 and headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, *sorted(labels.items())), 0.0)


def click(server: RunningServer, course: str) -> None:
    git("ls-remote", server.git_url(course))


def test_syncs_clicks_and_source_traffic_are_counted(tmp_path, files):
    make = config_factory(tmp_path, {"notes": {"source": "http", "url": files.url("/notes.ipynb"), "schedule": 0}},
                          refresh_ttl=0)
    with RunningServer(make) as server:
        before = scrape(server)
        assert value(before, "f2git_course_has_snapshot", course="notes") == 0

        click(server, "notes")  # the first click makes the first snapshot
        after_first = scrape(server)
        assert value(after_first, "f2git_clicks_total", course="notes") == 1
        assert value(after_first, "f2git_syncs_total", course="notes", outcome="changed") == 1
        assert value(after_first, "f2git_snapshot_files_total", course="notes", change="added") == 1
        assert value(after_first, "f2git_refresh_wait_seconds_count", course="notes") == 1
        assert value(after_first, "f2git_sync_duration_seconds_count", course="notes") == 1
        # what the source itself counted
        assert value(after_first, "f2git_source_requests_total", course="notes") == len(files.requests)
        assert value(after_first, "f2git_source_bytes_total", course="notes") == files.bytes_sent == len(NOTEBOOK)
        assert value(after_first, "f2git_course_has_snapshot", course="notes") == 1
        succeeded = value(after_first, "f2git_last_success_timestamp_seconds", course="notes")
        assert succeeded == pytest.approx(status.read(server.config, "notes").last_success, abs=0.5)

        click(server, "notes")  # unchanged: a conditional request, no body
        unchanged = scrape(server)
        assert value(unchanged, "f2git_syncs_total", course="notes", outcome="unchanged") == 1
        assert value(unchanged, "f2git_source_bytes_total", course="notes") == len(NOTEBOOK)
        assert value(unchanged, "f2git_source_requests_total", course="notes") == len(files.requests) == 2
        succeeded = value(unchanged, "f2git_last_success_timestamp_seconds", course="notes")

        files.remove("/notes.ipynb")  # the source breaks: the click gets the last snapshot
        click(server, "notes")
        broken = scrape(server)
        assert value(broken, "f2git_syncs_total", course="notes", outcome="failed") == 1
        assert value(broken, "f2git_stale_snapshots_served_total", course="notes", reason="failed") == 1
        assert value(broken, "f2git_course_ok", course="notes") == 0
        assert value(broken, "f2git_last_success_timestamp_seconds", course="notes") == succeeded
        assert value(broken, "f2git_clicks_total", course="notes") == 3


def test_clicks_inside_the_ttl_are_served_without_waiting(tmp_path, files):
    make = config_factory(tmp_path, {"notes": {"source": "http", "url": files.url("/notes.ipynb"), "schedule": 0}},
                          refresh_ttl=3600)
    with RunningServer(make) as server:
        for _ in range(3):
            click(server, "notes")
        samples = scrape(server)
    assert value(samples, "f2git_clicks_total", course="notes") == 3
    assert value(samples, "f2git_refresh_wait_seconds_count", course="notes") == 1  # only the first waited
    assert sum(v for k, v in samples.items() if k[0] == "f2git_syncs_total") == 1
    assert len(files.requests) == 1


def test_each_app_has_its_own_registry_and_restores_course_health_from_status(make_config, tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    config = make_config({"demo": {"source": "local", "path": str(folder), "schedule": 0}})
    sync_course(config, config.courses["demo"])
    first, second = make_app(config, auth=NoAuth()), make_app(config, auth=NoAuth())  # no duplicate timeseries
    first.settings["f2git_metrics"].clicks.labels("demo").inc()
    assert second.settings["f2git_metrics"].clicks.labels("demo")._value.get() == 0
    restored = Metrics(config)
    assert restored.last_success.labels("demo")._value.get() == status.read(config, "demo").last_success
    assert restored.has_snapshot.labels("demo")._value.get() == 1


def test_the_pack_cache_shows_its_hits_and_git_runs(tmp_path, files):
    make = config_factory(tmp_path, {"notes": {"source": "http", "url": files.url("/notes.ipynb"), "schedule": 0}},
                          refresh_ttl=3600)
    with RunningServer(make) as server:
        for number in range(3):  # the same shallow clone three times: git runs once
            git("clone", "--depth", "1", server.git_url("notes"), str(tmp_path / f"clone{number}"))
        samples = scrape(server)
    runs = value(samples, "f2git_pack_cache_git_runs_total", when="click") + \
        value(samples, "f2git_pack_cache_git_runs_total", when="ahead")
    assert runs >= 1
    assert value(samples, "f2git_pack_cache_answers_total", result="hit") >= 2
    assert value(samples, "f2git_pack_cache_entries") >= 1 and value(samples, "f2git_pack_cache_bytes") > 0


def test_a_local_folders_resyncs_are_counted_as_listings_of_changes(tmp_path):
    """The hub admin's check that a big local course re-syncs by what changed, in a real server."""
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "a.md").write_text("a\n")
    make = config_factory(tmp_path, {"local": {"source": "local", "path": str(folder), "schedule": 0}},
                          refresh_ttl=0, click_window=0)
    with RunningServer(make) as server:
        click(server, "local")
        (folder / "a.md").write_text("a, corrected\n")
        click(server, "local")
        (folder / "week2").mkdir()  # a new folder: the whole folder is listed again
        (folder / "week2" / "b.md").write_text("b\n")
        click(server, "local")
        samples = scrape(server)
    assert value(samples, "f2git_source_listings_total", course="local", kind="whole") == 2
    assert value(samples, "f2git_source_listings_total", course="local", kind="changes") == 1
    assert value(samples, "f2git_snapshot_files_total", course="local", change="added") == 2
