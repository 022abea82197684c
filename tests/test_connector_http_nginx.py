"""The `http` connector against nginx, a web server instructors really publish on
(tests/nginx.py): nginx's own ETag and Last-Modified, its 304 answers to the connector's
conditional GETs, redirects and 404s. tests/test_connector_http.py covers the same
connector against the Python test server, whose faults can be scripted.
"""
from __future__ import annotations

import os

import pytest

from connectors import SourceError
from connectors.http import HttpConnector, HttpOptions
from tests.archivefiles import zip_bytes
from tests.conformance import by_path, read_all
from tests.nginx import Nginx


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    with Nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


def connector(url: str, **options) -> HttpConnector:
    http = HttpConnector(HttpOptions(url=url, **options))
    http.session.sleep = lambda seconds: None
    return http


def put(web: Nginx, path: str, content: bytes, mtime: int) -> None:
    target = web.root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    os.utime(target, (mtime, mtime))


def test_an_unchanged_archive_is_a_304_and_no_body(web):
    put(web, "/course.zip", zip_bytes({"week1/a.txt": b"a" * 5000, "b.txt": b"b"}), 1_700_000_000)
    with connector(web.url("/course.zip")) as http:
        first = http.list({})
        assert set(by_path(first)) == {"week1/a.txt", "b.txt"}
        assert first.state["etag"] == '"6553f100-%x"' % (web.root / "course.zip").stat().st_size  # nginx's own
        second = http.list(first.state)
    assert second.unchanged and second.entries == []
    assert web.log_lines()[-1].startswith("304 0 range=- GET /course.zip")


def test_a_same_size_edit_a_second_later_is_downloaded(web):
    put(web, "/notes.txt", b"teh", 1_700_000_000)
    with connector(web.url("/notes.txt")) as http:
        first = http.list({})
        put(web, "/notes.txt", b"the", 1_700_000_001)  # nginx's ETag: mtime and size
        second = http.list(first.state)
        assert not second.unchanged and second.entries[0].version != first.entries[0].version
        assert read_all(http, second.entries[0]) == b"the"


def test_last_modified_alone_makes_the_get_conditional(web):
    put(web, "/no-etag/notes.txt", b"v1", 1_700_000_000)
    with connector(web.url("/no-etag/notes.txt")) as http:
        first = http.list({})
        assert first.state["last_modified"] == "Tue, 14 Nov 2023 22:13:20 GMT" and not first.state["etag"]
        assert http.list(first.state).unchanged
        put(web, "/no-etag/notes.txt", b"v2", 1_700_000_060)
        changed = http.list(first.state)
        assert not changed.unchanged and read_all(http, changed.entries[0]) == b"v2"


def test_redirects_are_followed_and_the_file_keeps_its_name(web):
    put(web, "/course.zip", zip_bytes({"a.txt": b"a"}), 1_700_000_000)
    put(web, "/notes.txt", b"n", 1_700_000_000)
    with connector(web.url("/moved/course.zip")) as http:
        assert set(by_path(http.list({}))) == {"a.txt"}
    with connector(web.url("/elsewhere/notes.txt")) as http:
        (entry,) = http.list({}).entries
        assert entry.path == "notes.txt" and read_all(http, entry) == b"n"


def test_a_redirect_loop_and_a_missing_file_are_source_errors(web):
    with connector(web.url("/loop")) as http, pytest.raises(SourceError, match="too many redirects"):
        http.list({})
    with connector(web.url("/no-such.zip")) as http, pytest.raises(SourceError, match="not found"):
        http.list({})


def test_nginx_honours_ranges_the_connector_never_asks_for(web):
    """A whole body per GET: a Range answer (206) would be a part read as the whole file."""
    import requests
    put(web, "/data.bin", bytes(range(256)), 1_700_000_000)
    assert requests.get(web.url("/data.bin"), headers={"Range": "bytes=0-9"}, timeout=10).status_code == 206
    with connector(web.url("/data.bin")) as http:
        (entry,) = http.list({}).entries
        assert read_all(http, entry) == bytes(range(256))
    assert web.log_lines()[-1].startswith("200 256 range=- GET /data.bin")
