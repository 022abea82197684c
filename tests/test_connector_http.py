"""The `http` connector against a real local web server (tests/httpserver.py)."""
from __future__ import annotations

import io
import os
import tarfile

import pytest

from connectors import SourceError, connector_class
from connectors.http import HttpConnector, HttpOptions
from tests.conformance import ConnectorConformance, by_path, read_all
from tests.archivefiles import zip_bytes
from tests.httpserver import FileServer


def tgz_bytes(files: dict[str, bytes], top: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(content)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def connector(url: str, **options) -> HttpConnector:
    http = HttpConnector(HttpOptions(url=url, **options))
    http.session.sleep = lambda seconds: None  # retries without waiting
    return http


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def contents(http: HttpConnector, listing) -> dict[str, bytes]:
    return {path: read_all(http, entry) for path, entry in by_path(listing).items()}


class TestHttpZipConformance(ConnectorConformance):
    """A zip with one top folder, as "Download folder" buttons make them."""

    @pytest.fixture(autouse=True)
    def _server(self, server):
        self.server = server

    def publish(self, files):
        self.server.put("/course.zip", zip_bytes(files, top="course/"), content_type="application/zip")
        return connector(self.server.url("/course.zip"))


class TestHttpTarGzConformance(ConnectorConformance):
    """A flat .tar.gz at a URL without an archive suffix: recognised by its content."""

    @pytest.fixture(autouse=True)
    def _server(self, server):
        self.server = server

    def publish(self, files):
        self.server.put("/latest", tgz_bytes(files))
        return connector(self.server.url("/latest"))


# Conditional GET ----------------------------------------------------------------------

def test_not_modified_means_no_download(server):
    server.put("/course.zip", zip_bytes({"a.txt": b"a" * 10_000}))
    with connector(server.url("/course.zip")) as http:
        first = http.list({})
        sent = server.bytes_sent
        second = http.list(first.state)
    assert second.unchanged and second.entries == [] and second.state == first.state
    assert server.bytes_sent == sent  # not one body byte more
    assert server.requests[-1].headers["If-None-Match"] == server.resources["/course.zip"].etag


def test_last_modified_alone_makes_the_get_conditional(server):
    server.put("/notes.txt", b"v1", send_etag=False)
    with connector(server.url("/notes.txt")) as http:
        first = http.list({})
        assert first.state["last_modified"] and not first.state["etag"]
        assert http.list(first.state).unchanged
        assert "If-Modified-Since" in server.requests[-1].headers

        server.put("/notes.txt", b"v2", send_etag=False)
        changed = http.list(first.state)
    assert not changed.unchanged
    assert changed.entries[0].version != first.entries[0].version


def test_a_changed_file_is_downloaded_again(server):
    server.put("/course.zip", zip_bytes({"a.txt": b"one", "b.txt": b"two"}))
    with connector(server.url("/course.zip")) as http:
        first = http.list({})
        server.put("/course.zip", zip_bytes({"a.txt": b"one, edited", "b.txt": b"two"}))
        second = http.list(first.state)
        assert not second.unchanged
        assert contents(http, second) == {"a.txt": b"one, edited", "b.txt": b"two"}


def test_state_of_another_url_is_not_sent(server):
    server.put("/a.txt", b"a")
    server.put("/b.txt", b"b")
    with connector(server.url("/a.txt")) as http:
        state = http.list({}).state
    with connector(server.url("/b.txt")) as http:
        listing = http.list(state)
    assert not listing.unchanged and "If-None-Match" not in server.requests[-1].headers


# Single files and names ---------------------------------------------------------------

def test_single_file_is_one_entry_named_after_the_url(server):
    body = os.urandom(300_000)
    server.put("/files/Lecture%201.ipynb", body)
    server.put("/files/Lecture 1.ipynb", body)
    with connector(server.url("/files/Lecture%201.ipynb")) as http:
        listing = http.list({})
        (entry,) = listing.entries
        assert entry.path == "Lecture 1.ipynb" and entry.size == len(body)
        assert entry.version == "etag:" + server.resources["/files/Lecture 1.ipynb"].etag
        assert read_all(http, entry) == body


def test_single_file_version_without_validators_is_a_content_hash(server):
    server.put("/data.csv", b"a,b\n", send_etag=False, send_last_modified=False)
    with connector(server.url("/data.csv")) as http:
        first = http.list({}).entries[0].version
        assert http.list({}).entries[0].version == first
        server.put("/data.csv", b"a,c\n", send_etag=False, send_last_modified=False)
        assert http.list({}).entries[0].version != first


def test_content_disposition_names_the_file(server):
    server.put("/download", b"{}", disposition="attachment; filename=\"x.txt\"; filename*=UTF-8''%C3%9Cbung%201.ipynb")
    server.put("/get", b"%PDF", disposition='attachment; filename="../../slides.pdf"')
    with connector(server.url("/download?id=3")) as http:
        assert [e.path for e in http.list({}).entries] == ["Übung 1.ipynb"]
    with connector(server.url("/get")) as http:
        assert [e.path for e in http.list({}).entries] == ["slides.pdf"]


def test_single_top_folder_is_unwrapped(server):
    server.put("/c.tgz", tgz_bytes({"README.md": b"r", "week1/a.ipynb": b"a"}, top="course-2024/"))
    with connector(server.url("/c.tgz")) as http:
        assert contents(http, http.list({})) == {"README.md": b"r", "week1/a.ipynb": b"a"}


def test_extract_option_overrides_the_guess(server):
    archive = zip_bytes({"a.txt": b"a"})
    server.put("/bundle.zip", archive)
    server.put("/slides.docx", archive)  # an Office file is a zip too
    server.put("/notes.txt", b"plain")
    with connector(server.url("/bundle.zip"), extract=False) as http:
        entries = http.list({}).entries
        assert [e.path for e in entries] == ["bundle.zip"] and read_all(http, entries[0]) == archive
    with connector(server.url("/slides.docx")) as http:
        assert [e.path for e in http.list({}).entries] == ["slides.docx"]
    with connector(server.url("/slides.docx"), extract=True) as http:
        assert [e.path for e in http.list({}).entries] == ["a.txt"]
    with connector(server.url("/notes.txt"), extract=True) as http:
        with pytest.raises(SourceError, match="extract = true, but notes.txt is not a zip or tar archive"):
            http.list({})


def test_hostile_archive_is_contained_in_the_scratch_dir(server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, kind in (("../escape.txt", tarfile.REGTYPE), ("/tmp/f2git-absolute.txt", tarfile.REGTYPE),
                           ("link", tarfile.SYMTYPE), ("ok.txt", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            info.size = 4 if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    server.put("/evil.tgz", buffer.getvalue())
    monkeypatch.chdir(tmp_path)
    with connector(server.url("/evil.tgz")) as http:
        listing = http.list({})
        scratch = http.scratch_dir()
        assert [e.path for e in listing.entries] == ["ok.txt"]
        assert {s.path for s in listing.skipped} == {"../escape.txt", "/tmp/f2git-absolute.txt", "link"}
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "escape.txt").exists()
    assert not os.path.exists("/tmp/f2git-absolute.txt") and not os.path.exists(scratch)


def test_damaged_archive_names_the_archive(server):
    server.put("/course.zip", zip_bytes({"a.txt": b"a" * 1000})[:-30])
    with connector(server.url("/course.zip")) as http:
        with pytest.raises(SourceError, match="web server: course.zip is not a zip or tar archive, or it is damaged"):
            http.list({})


# A misbehaving server -----------------------------------------------------------------

@pytest.mark.parametrize("fault, message", [
    ("truncate", r"sent \d+ bytes, expected \d+|broke off"),
    ("reset", r"broke off after \d+ bytes|sent \d+ bytes, expected"),
])
def test_broken_download_is_a_source_error(server, fault, message):
    server.put("/course.zip", zip_bytes({"a.txt": os.urandom(200_000)}))
    server.fault = fault
    with connector(server.url("/course.zip")) as http:
        with pytest.raises(SourceError, match=message):
            http.list({})
        assert os.listdir(http.scratch_dir()) == []  # the partial body is gone


def test_a_failed_download_keeps_the_previous_one_readable(server):
    server.put("/notes.txt", b"v1")
    with connector(server.url("/notes.txt")) as http:
        listing = http.list({})
        server.put("/notes.txt", b"v2, longer")
        server.fault = "truncate"
        with pytest.raises(SourceError):
            http.list(listing.state)
        assert read_all(http, listing.entries[0]) == b"v1"


def test_server_error_is_retried_then_a_source_error(server):
    server.put("/course.zip", b"")
    server.fault = "error"
    with connector(server.url("/course.zip")) as http:
        with pytest.raises(SourceError, match="web server: answered 500"):
            http.list({})
        assert len(server.requests) == http.session.retries + 1


def test_hanging_server_times_out(server):
    server.put("/course.zip", b"")
    server.fault = "hang"
    with connector(server.url("/course.zip")) as http:
        http.session.timeout = (2.0, 0.5)
        http.session.retries = 1
        with pytest.raises(SourceError, match=r"timed out waiting for an answer \(after 2 tries\)"):
            http.list({})


def test_not_found_and_html_pages_are_source_errors(server):
    server.put("/course.zip", b"<html><body>Please sign in</body></html>", content_type="text/html")
    with connector(server.url("/missing.zip")) as http:
        with pytest.raises(SourceError, match=r"not found \(404\)"):
            http.list({})
    with connector(server.url("/course.zip")) as http:
        with pytest.raises(SourceError, match="HTML page instead of a file"):
            http.list({})


def test_html_file_that_is_the_content_is_fine(server):
    server.put("/syllabus.html", b"<html>Syllabus</html>", content_type="text/html")
    with connector(server.url("/syllabus.html")) as http:
        assert [e.path for e in http.list({}).entries] == ["syllabus.html"]


def test_a_token_in_the_url_never_reaches_an_error(server):
    secret = "tok-5f9c1e7a-SECRET"
    with connector(server.url(f"/missing.zip?token={secret}")) as http:
        with pytest.raises(SourceError) as caught:
            http.list({})
    assert secret not in str(caught.value) and "missing.zip" in str(caught.value)


def test_download_size_cap(server):
    server.put("/big.bin", os.urandom(100_000))
    with connector(server.url("/big.bin")) as http:
        http.max_download = 50_000
        with pytest.raises(SourceError, match="larger than 50000 bytes"):
            http.list({})


# Configuration ------------------------------------------------------------------------

def test_registry_and_options():
    assert connector_class("http") is HttpConnector
    with pytest.raises(ValueError, match="missing key 'url'"):
        HttpOptions().validate()
    with pytest.raises(ValueError, match="key 'url': expected an http"):
        HttpOptions(url="ftp://example.org/course.zip").validate()
    HttpOptions(url="https://example.org/course.zip").validate()


def test_config_file_keys(tmp_path):
    from f2git.config import ConfigError, parse
    course = {"source": "http", "url": "https://example.org/course.tgz"}
    config = parse({"courses": {"c": course}}, tmp_path / "f2git.toml", {})
    assert config.courses["c"].options == HttpOptions(url="https://example.org/course.tgz", extract=None)
    config = parse({"courses": {"c": {**course, "extract": False}}}, tmp_path / "f2git.toml", {})
    assert config.courses["c"].options.extract is False
    with pytest.raises(ConfigError, match=r"\[courses.c\] key 'extract': expected true or false, got 'yes'"):
        parse({"courses": {"c": {**course, "extract": "yes"}}}, tmp_path / "f2git.toml", {})


def test_sync_downloads_once_then_only_asks(server, make_config):
    """Through the real engine: a second sync costs one 304, an edit re-commits one file."""
    from f2git.snapshot import sync_course

    files = {"README.md": b"# Course\n", "week1/a.ipynb": b"{}"}
    server.put("/course.tgz", tgz_bytes(files, top="course/"))
    config = make_config({"c1": {"source": "http", "url": server.url("/course.tgz")}})
    first = sync_course(config, config.courses["c1"])
    assert first.ok and first.added == 2, first.error
    sent = server.bytes_sent

    second = sync_course(config, config.courses["c1"])
    assert second.ok and not second.changed and second.commit == first.commit
    assert server.bytes_sent == sent and server.requests[-1].headers.get("If-None-Match")

    server.put("/course.tgz", tgz_bytes({**files, "week1/a.ipynb": b'{"cells": []}'}, top="course/"))
    third = sync_course(config, config.courses["c1"])
    assert third.ok and (third.added, third.modified, third.deleted) == (0, 1, 0)
