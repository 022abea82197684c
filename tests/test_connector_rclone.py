"""rclone against real storage: a local WebDAV server (tests/webdav.py) configured through
rclone's own RCLONE_CONFIG_* variables, and rclone's `local` backend."""
from __future__ import annotations

import io
import os
import socket
import subprocess
from importlib import metadata

import pytest

from connectors import AuthError, SourceError
from connectors import rclone as rclone_module
from connectors.rclone import RcloneConnector, RcloneOptions, find_rclone
from tests.conformance import BINARY, ConnectorConformance, by_path, read_all
from tests.webdav import WebDAVServer, write_tree

PASSWORD = "Dav-Pa55 $HOME `id` 'q' \"dq\" 8e1f"
HOSTILE_NAMES = {
    "$HOME `id` 'single' \"double\".txt": b"shell one",
    "dir $(touch pwned)/; rm -rf ~ & echo | cat > x.md": b"shell two",
    "double  spaces? [1] {a,b} *.ipynb": b"{}",
    "--config=x -R.txt": b"not an option",
}


def obscure(secret: str) -> str:
    """rclone's reversible encoding of a password for RCLONE_CONFIG_*_PASS (read from stdin)."""
    return subprocess.run([find_rclone(), "obscure", "-"], input=secret.encode(), capture_output=True,
                          check=True).stdout.decode().strip()


def make(remote: str, env: dict) -> RcloneConnector:
    options = RcloneOptions(remote=remote)
    options.validate()
    return RcloneConnector(options, course="c", env=env)


@pytest.fixture
def dav(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    with WebDAVServer(root, prefix="/remote.php/dav/files/student", username="student", password=PASSWORD) as server:
        yield server


def webdav_env(server: WebDAVServer, tmp_path, password: str = PASSWORD) -> dict:
    return {"HOME": str(tmp_path),  # no user rclone.conf leaks into the test
            "RCLONE_CONFIG_COURSE_TYPE": "webdav", "RCLONE_CONFIG_COURSE_URL": server.url,
            "RCLONE_CONFIG_COURSE_VENDOR": "other", "RCLONE_CONFIG_COURSE_USER": server.username,
            "RCLONE_CONFIG_COURSE_PASS": obscure(password)}


class ShellSafety:
    """Names reach rclone as arguments, never through a shell that would expand them."""

    def test_names_with_shell_characters_reach_rclone_unharmed(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)  # where `touch pwned` would land
        with self.publish(HOSTILE_NAMES) as connector:
            entries = by_path(connector.list({}))
            assert set(entries) == set(HOSTILE_NAMES)
            for path, content in HOSTILE_NAMES.items():
                assert read_all(connector, entries[path]) == content
        assert not (tmp_path / "pwned").exists()


class TestRcloneWebDAV(ShellSafety, ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _server(self, dav, tmp_path):
        self.dav = dav
        self.env = webdav_env(dav, tmp_path)

    def publish(self, files):
        write_tree(self.dav.root, files)
        return make("course:", self.env)

    def test_a_subfolder_remote_is_the_repo_root(self):
        write_tree(self.dav.root, {"course/week 1/a.txt": b"a", "other/b.txt": b"b"})
        with make("course:course", self.env) as connector:
            entries = by_path(connector.list({}))
            assert set(entries) == {"week 1/a.txt"}
            assert read_all(connector, entries["week 1/a.txt"]) == b"a"

    def test_webdav_without_hashes_versions_by_modification_time_and_size(self):
        with self.publish({"a.txt": b"one"}) as connector:
            (entry,) = connector.list({}).entries
            assert connector.hash_type() is None
            assert entry.version.startswith("modified:") and entry.version.endswith(":3")

    def test_wrong_password_is_an_auth_error_without_the_password(self, tmp_path):
        write_tree(self.dav.root, {"a.txt": b"a"})
        wrong = "Wrong-Distinctive-Pa55-77c0"
        env = webdav_env(self.dav, tmp_path, password=wrong)
        with make("course:", env) as connector, pytest.raises(AuthError) as caught:
            connector.list({})
        message = str(caught.value)
        assert "rejected the credentials" in message and "RCLONE_CONFIG_COURSE_" in message
        for secret in (wrong, env["RCLONE_CONFIG_COURSE_PASS"], PASSWORD):
            assert secret not in message

    def test_a_connection_string_works_and_its_secret_stays_out_of_errors(self, tmp_path):
        write_tree(self.dav.root, {"a.txt": b"a"})
        env = {"HOME": str(tmp_path)}
        good = obscure(PASSWORD)
        remote = f":webdav,url='{self.dav.url}',vendor=other,user=student,pass={good}:"
        with make(remote, env) as connector:
            assert read_all(connector, connector.list({}).entries[0]) == b"a"
        bad = obscure("not-the-password")
        with make(remote.replace(good, bad), env) as connector, pytest.raises(AuthError) as caught:
            connector.list({})
        assert bad not in str(caught.value) and "connection string" in str(caught.value)

    def test_a_missing_folder_fails_the_listing(self):
        write_tree(self.dav.root, {"a.txt": b"a"})
        with make("course:no such folder", self.env) as connector, pytest.raises(SourceError, match="not found"):
            connector.list({})


class TestRcloneLocalBackend(ShellSafety, ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        # The remote's own path holds shell characters too.
        self.root = tmp_path / "course $USER `whoami` 'x'"
        self.root.mkdir()
        self.env = {"HOME": str(tmp_path), "RCLONE_CONFIG_FILES_TYPE": "local"}

    def publish(self, files):
        write_tree(self.root, files)
        return make(f"files:{self.root}", self.env)

    def test_local_files_version_by_nanosecond_modification_time_not_by_reading_them(self):
        with self.publish({"a.txt": b"one"}) as connector:
            (entry,) = connector.list({}).entries
            assert connector.hash_type() is None  # local hashes need every byte read: not used
            os.utime(self.root / "a.txt", ns=(1, 1_700_000_000_123_456_789))
            (touched,) = connector.list({}).entries
            assert touched.version != entry.version and ".123456789" in touched.version

    def test_symbolic_links_are_reported_as_skipped_not_followed(self):
        with self.publish({"week1/a.txt": b"a"}) as connector:
            (self.root / "week1" / "secrets").symlink_to("/etc/passwd")
            (self.root / "etc").symlink_to("/etc")
            listing = connector.list({})
            assert [e.path for e in listing.entries] == ["week1/a.txt"]
            assert {s.path: s.reason for s in listing.skipped} == {
                "week1/secrets": "a symbolic link (links are not followed)",
                "etc": "a symbolic link (links are not followed)"}

    def test_a_process_that_dies_mid_stream_is_an_error_on_read(self):
        with self.publish({"big.bin": BINARY * 40}) as connector:  # 5 MiB, far more than a pipe holds
            stream = connector.open(connector.list({}).entries[0])
            assert stream.read(65536)
            stream.raw.process.kill()
            with pytest.raises(SourceError, match="reading 'big.bin'"):
                while stream.read(65536):
                    pass
            stream.close()

    def test_a_file_that_shrinks_after_listing_is_an_error(self):
        with self.publish({"a.txt": b"0123456789"}) as connector:
            entry = connector.list({}).entries[0]
            (self.root / "a.txt").write_bytes(b"01234")
            with pytest.raises(SourceError, match="sent 5 bytes, expected 10"):
                read_all(connector, entry)

    def test_close_ends_every_rclone_process(self):
        with self.publish({"big.bin": BINARY * 40, "b.bin": BINARY * 40}) as connector:
            streams = [connector.open(entry) for entry in connector.list({}).entries]
            for stream in streams:
                assert stream.read(1024)
        processes = [stream.raw.process for stream in streams]
        assert all(process.returncode is not None for process in processes)

    def test_closing_a_stream_early_ends_its_process(self):
        with self.publish({"big.bin": BINARY * 40}) as connector:
            stream = connector.open(connector.list({}).entries[0])
            stream.read(10)
            process = stream.raw.process
            stream.close()
            assert process.returncode is not None


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/dav/"
    listener.close()


def test_a_silent_server_makes_listing_time_out(silent_server, tmp_path):
    env = {"HOME": str(tmp_path), "RCLONE_CONFIG_SLOW_TYPE": "webdav", "RCLONE_CONFIG_SLOW_URL": silent_server}
    with make("slow:", env) as connector:
        connector.probe_timeout = connector.list_timeout = 2
        with pytest.raises(SourceError, match="longer than 2 s"):
            connector.list({})


def test_a_silent_server_makes_reading_time_out(silent_server, tmp_path):
    from connectors import Entry
    env = {"HOME": str(tmp_path), "RCLONE_CONFIG_SLOW_TYPE": "webdav", "RCLONE_CONFIG_SLOW_URL": silent_server}
    with make("slow:", env) as connector:
        connector.cat_timeout = 2
        with pytest.raises(SourceError, match="longer than 2 s"):
            read_all(connector, Entry("a.txt", 1, "v", ref="a.txt"))


def test_hashes_are_the_version_where_the_backend_keeps_them(tmp_path):
    connector = make("s3:bucket", {})
    connector._features = {"Hashes": ["md5"], "Features": {"SlowHash": False}}
    assert connector.hash_type() == "md5"
    item = {"Path": "a.txt", "Size": 3, "ModTime": "2025-01-01T00:00:00Z", "Hashes": {"md5": "abc"}}
    assert connector._version(item, "md5") == "md5:abc"
    # A multipart S3 upload has no md5: the modification time stands in.
    assert connector._version({**item, "Hashes": {"md5": ""}}, "md5") == "modified:2025-01-01T00:00:00Z:3"


def test_the_binary_is_found_from_the_wheel():
    path = find_rclone()
    assert os.access(path, os.X_OK)
    assert subprocess.run([path, "version"], capture_output=True, check=True).stdout.startswith(b"rclone v")


def test_a_missing_binary_names_the_extra_to_install(monkeypatch, tmp_path):
    def no_distribution(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(rclone_module.metadata, "distribution", no_distribution)
    monkeypatch.setattr(rclone_module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with make("x:", {}) as connector, pytest.raises(SourceError, match=r"pip install 'f2git\[rclone\]'"):
        connector.list({})


@pytest.mark.parametrize("remote, message", [
    ("", "missing key 'remote'"),
    ("--config=/etc/passwd:x", "rclone option"),
    ("/srv/course", "not 'name:path'"),
    ("a:\nb", "control character"),
])
def test_bad_remotes_name_the_key(remote, message):
    with pytest.raises(ValueError, match=message):
        RcloneOptions(remote=remote).validate()


def test_a_course_config_loads():
    import tomllib
    from pathlib import Path

    from f2git import config
    table = tomllib.loads('[courses.stats]\nsource = "rclone"\nremote = "coursefiles:Teaching/Stats 2025"\n')
    course = config.parse(table, Path("f2git.toml"), {}).courses["stats"]
    assert isinstance(course.connector({}), RcloneConnector)
    assert course.options.remote == "coursefiles:Teaching/Stats 2025"


def test_a_sync_through_the_engine_fetches_only_the_changed_file(dav, tmp_path, make_config):
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    env = webdav_env(dav, tmp_path)
    write_tree(dav.root, {"week1/a.ipynb": b"{}", "b.txt": b"b", "$x `y`.md": b"m"})
    config = make_config({"stats": {"source": "rclone", "remote": "course:"}}, env=env)
    course = config.courses["stats"]
    first = sync_course(config, course, connector=course.connector(env))
    assert first.ok, first.error
    repo = CourseRepo.for_course(config, "stats")
    assert set(repo.files(repo.head())) == {"week1/a.ipynb", "b.txt", "$x `y`.md"}
    write_tree(dav.root, {"week1/a.ipynb": b'{"cells": []}', "b.txt": b"b", "$x `y`.md": b"m"})
    second = sync_course(config, course, connector=course.connector(env))
    assert (second.ok, second.added, second.modified, second.deleted) == (True, 0, 1, 0)
    assert repo.git("cat-file", "blob", f"{second.commit}:week1/a.ipynb") == '{"cells": []}'
