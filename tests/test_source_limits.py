"""Sources that hang or trickle: every read of a sync is bounded overall, not only per read.

A server sending one byte a second answers every single read in time, so per-read timeouts
never fire; the course's `sync_timeout` (the whole sync) and `min_read_speed` (every body,
averaged over connectors.base.SLOW_WINDOW) do. The sources here are real HTTP servers on
127.0.0.1 (tests/httpserver.py) and a real `f2git serve`.
"""
from __future__ import annotations

import time

import pytest

import connectors.base
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.httpserver import FileServer
from tests.serveprocess import ServeProcess, write_config


@pytest.fixture
def web():
    with FileServer() as server:
        yield server


def http_course(make_config, url: str, **keys):
    config = make_config({"web": {"source": "http", "url": url, **keys}})
    return config, config.courses["web"]


def test_a_download_that_trickles_fails_the_sync_and_keeps_the_last_snapshot(web, make_config, monkeypatch):
    web.put("/notes.txt", b"first version\n" * 100)
    config, course = http_course(make_config, web.url("/notes.txt"))
    first = sync_course(config, course)
    assert first.ok and first.changed

    monkeypatch.setattr(connectors.base, "SLOW_WINDOW", 1.0)  # seconds instead of 30, same rule
    web.put("/notes.txt", b"second version\n" * 100)
    web.fault, web.trickle_interval = "trickle", 0.1  # 10 bytes/s, far below 1024
    started = time.monotonic()
    result = sync_course(config, course)
    assert not result.ok
    assert "arrived too slowly" in result.error and "min_read_speed" in result.error, result.error
    assert time.monotonic() - started < 15  # bounded by the rule, not by the body's 1500 s
    assert CourseRepo.for_course(config, "web").head() == first.commit


def test_sync_timeout_bounds_a_whole_sync_whose_every_read_is_quick(web, make_config):
    web.put("/course.txt", b"x" * 10_000)
    web.fault, web.trickle_interval = "trickle", 0.05
    config, course = http_course(make_config, web.url("/course.txt"), sync_timeout=1.5, min_read_speed=0)
    started = time.monotonic()
    result = sync_course(config, course)
    assert not result.ok and "sync_timeout (1.5 s)" in result.error, result.error
    assert time.monotonic() - started < 10


def test_a_source_that_never_answers_is_bounded_by_sync_timeout_too(web, make_config):
    web.put("/course.txt", b"x")
    web.fault = "hang"  # accepts, then says nothing
    config, course = http_course(make_config, web.url("/course.txt"), sync_timeout=1.0)
    started = time.monotonic()
    result = sync_course(config, course)
    assert not result.ok and "sync_timeout" in result.error, result.error
    assert time.monotonic() - started < 10  # not 5 tries x 60 s read timeouts


def test_min_read_speed_zero_and_a_fast_source_are_never_cut(web, make_config, monkeypatch):
    monkeypatch.setattr(connectors.base, "SLOW_WINDOW", 0.2)
    web.put("/data.bin", bytes(range(256)) * 40_000)  # 10 MB at loopback speed
    config, course = http_course(make_config, web.url("/data.bin"))
    result = sync_course(config, course)
    assert result.ok, result.error


def test_trickling_courses_fail_by_themselves_in_a_real_server_while_a_healthy_one_syncs(web, tmp_path):
    web.put("/slow.txt", b"s" * 100_000)
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    (healthy / "README.md").write_text("hello\n")
    slow = {f"slow{i}": {"source": "http", "url": web.url("/slow.txt"), "sync_timeout": 3, "schedule": 0}
            for i in range(4)}
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {**slow, "healthy": {"source": "local", "path": str(healthy), "schedule": 0}})
    web.fault, web.trickle_interval = "trickle", 0.2
    with ServeProcess(config) as server:
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            hung = [pool.submit(server.post, f"/api/courses/{name}/refresh") for name in slow]
            time.sleep(0.5)  # the four syncs hold their workers now
            status, answer = server.post("/api/courses/healthy/refresh", timeout=60)
            assert status == 200 and answer["ok"], answer
            for future in hung:
                status, answer = future.result(timeout=60)
                assert answer["ok"] is False and "sync_timeout (3 s)" in answer["error"], answer
        log = server.output()
    assert log.count("sync_timeout") < 50  # one line per failed sync, no storm


# --- an unreachable source says why: refused, DNS, TLS or timeout -----------------------------

def unreachable_error(url: str, make_config, **keys) -> str:
    from connectors import _http
    config, course = http_course(make_config, url, **keys)
    connector = course.connector()
    connector.session.retries = 0  # one try: the cause, not the retry policy, is under test
    result = sync_course(config, course, connector=connector)
    assert not result.ok
    assert _http.where(url) in result.error  # where, without query or userinfo
    return result.error


def test_a_refused_connection_is_named(make_config):
    from tests.serveprocess import free_port
    assert "refused the connection" in unreachable_error(f"http://127.0.0.1:{free_port()}/c.zip", make_config)


def test_a_host_name_that_does_not_resolve_is_named(make_config):
    assert "DNS" in unreachable_error("http://no-such-host.invalid/c.zip", make_config)


def test_a_tls_failure_is_named(web, make_config):
    # A plain-HTTP server asked for TLS: the handshake fails, as with a broken proxy or port.
    url = web.url("/c.zip").replace("http://", "https://")
    assert "TLS" in unreachable_error(url, make_config)


def test_a_timeout_is_named(web, make_config):
    web.put("/c.zip", b"x")
    web.fault = "hang"
    assert "timed out" in unreachable_error(web.url("/c.zip"), make_config, sync_timeout=1.5)
