"""rclone against the real storage software it talks to, on 127.0.0.1, configured only
through rclone's own RCLONE_CONFIG_* variables as the README shows: `rclone serve webdav`
with a user and password (tests/rcloneserve.py), moto's S3 server with authentication on
(IAM keys, S3's 403 answers, objects uploaded in parts whose ETag is no md5), and rclone's
`local` backend.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import unicodedata
from importlib import metadata

import pytest

from connectors import AuthError, SourceError
from connectors import rclone as rclone_module
from connectors.rclone import RcloneConnector, RcloneOptions, find_rclone
from tests.conformance import BINARY, ConnectorConformance, by_path, read_all
from tests.rcloneserve import MotoS3, RcloneWebDav, obscure  # noqa: F401 (obscure: end-to-end tests)
from tests.webdav import write_tree

PASSWORD = "Dav-Pa55 $HOME `id` 'q' \"dq\" 8e1f"
HOSTILE_NAMES = {
    "$HOME `id` 'single' \"double\".txt": b"shell one",
    "dir $(touch pwned)/; rm -rf ~ & echo | cat > x.md": b"shell two",
    "double  spaces? [1] {a,b} *.ipynb": b"{}",
    "--config=x -R.txt": b"not an option",
}
# Accounts as people type them (HTTP Basic cannot carry a colon in the user name).
ACCOUNTS = [
    ("jürgen.groß", "Pässwort mit Leerzeichen"),
    ("Zoë Ümit", "€uro:Straße: 100 €"),
    ("büro öffentlichkeit", "ß:ä:ö:ü: € ::"),
]


def make(remote: str, env: dict) -> RcloneConnector:
    options = RcloneOptions(remote=remote)
    options.validate()
    return RcloneConnector(options, course="c", env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("rclone-webdav") / "served"
    root.mkdir()
    with RcloneWebDav(root, username="student", password=PASSWORD) as server:
        yield server


@pytest.fixture
def dav(served):
    write_tree(served.root, {})
    return served


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with MotoS3(tmp_path_factory.mktemp("rclone-s3")) as server:
        yield server


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
    def _server(self, dav):
        self.dav = dav
        self.env = dav.rclone_env()

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

    @pytest.mark.parametrize("remote", ["course:", "course:week 1", "course:a.txt"])
    def test_wrong_password_is_an_auth_error_without_the_password(self, remote):
        write_tree(self.dav.root, {"a.txt": b"a", "week 1/b.txt": b"b"})
        wrong = "Wrong-Distinctive-Pa55-77c0"
        env = self.dav.rclone_env(password=wrong)
        with make(remote, env) as connector, pytest.raises(AuthError) as caught:
            connector.list({})
        message = str(caught.value)
        assert "rejected the credentials" in message and "RCLONE_CONFIG_COURSE_*" in message
        for secret in (wrong, env["RCLONE_CONFIG_COURSE_PASS"], PASSWORD):
            assert secret not in message

    def test_nfd_names_from_a_mac_are_read_by_their_own_bytes(self):
        nfd = unicodedata.normalize("NFD", "Übung/Lösung.ipynb")
        with self.publish({nfd: b"{}"}) as connector:
            (entry,) = connector.list({}).entries
            assert entry.path == nfd  # the engine writes it as NFC (f2git/paths.py)
            assert read_all(connector, entry) == b"{}"

    def test_a_same_size_edit_a_second_later_changes_the_version(self):
        """Plain WebDAV keeps no hash: the modification time (to the second) and size tell."""
        write_tree(self.dav.root, {"a.txt": b"teh"})
        os.utime(self.dav.root / "a.txt", (1_700_000_000, 1_700_000_000))
        with make("course:", self.env) as connector:
            before = connector.list({}).entries[0]
            (self.dav.root / "a.txt").write_bytes(b"the")
            os.utime(self.dav.root / "a.txt", (1_700_000_001, 1_700_000_001))
            after = connector.list({}).entries[0]
            assert after.version != before.version and read_all(connector, after) == b"the"

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


@pytest.mark.parametrize("username, password", ACCOUNTS)
def test_utf8_accounts_reach_the_webdav_server(tmp_path, username, password):
    root = tmp_path / "served"
    write_tree(root, {"Übung/a.txt": b"a"})
    with RcloneWebDav(root, username=username, password=password) as server:
        with make("course:", server.rclone_env()) as connector:
            assert read_all(connector, connector.list({}).entries[0]) == b"a"


class TestRcloneS3(ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _server(self, s3):
        self.s3 = s3
        self.env = s3.rclone_env()

    def publish(self, files):
        self.s3.publish(files)
        return make("course:course", self.env)

    def test_simple_uploads_are_versioned_by_their_md5(self):
        with self.publish({"a.txt": b"one"}) as connector:
            assert connector.list({}).entries[0].version == "md5:f97c5d29941bfb1b2fdab0874906ab82"

    def test_objects_uploaded_in_parts_are_read_whole_and_versioned_without_an_md5(self):
        big = BINARY * 48  # 6 MiB: two parts
        self.s3.publish({"week 1/big.bin": big, "small.txt": b"s"}, multipart=("week 1/big.bin",))
        etag = self.s3.s3.head_object(Bucket=self.s3.bucket, Key="week 1/big.bin")["ETag"]
        assert etag.strip('"').endswith("-2")  # no md5: S3's multipart ETag
        with make("course:course", self.env) as connector:
            entries = by_path(connector.list({}))
            entry = entries["week 1/big.bin"]
            assert entry.version.startswith("modified:") and entry.size == len(big)
            assert read_all(connector, entry) == big
            # A new upload of the same size: S3's own time (to the second) moves.
            time.sleep(1.05 - time.time() % 1)
            self.s3.upload_in_parts("week 1/big.bin", big[::-1])
            again = by_path(connector.list({}))["week 1/big.bin"]
            assert again.version != entry.version and read_all(connector, again) == big[::-1]

    @pytest.mark.parametrize("remote", ["course:course", "course:course/week 1", "course:course/a.txt"])
    def test_a_wrong_secret_is_a_rejected_credential_not_a_file(self, remote):
        """S3 answers 403; rclone's probe reads a 403 on the path as "is a file"."""
        self.s3.publish({"a.txt": b"a", "week 1/b.txt": b"b"})
        wrong = "Wrong+Distinctive/S3-Secret-5d1c"
        with make(remote, self.s3.rclone_env(secret=wrong)) as connector, pytest.raises(AuthError) as caught:
            connector.list({})
        message = str(caught.value)
        assert "rejected the credentials" in message and "403" in message
        assert "RCLONE_CONFIG_COURSE_*" in message and "is a file" not in message
        assert wrong not in message and self.s3.secret not in message

    def test_an_unknown_access_key_is_a_rejected_credential(self):
        with make("course:course", self.s3.rclone_env(key_id="AKIAUNKNOWN0000000")) as connector:
            with pytest.raises(AuthError, match="rejected the credentials.*RCLONE_CONFIG_COURSE_"):
                connector.list({})

    def test_a_remote_naming_a_file_says_so(self):
        self.s3.publish({"a.txt": b"a"})
        with make("course:course/a.txt", self.env) as connector:
            with pytest.raises(SourceError, match="is a file, not a folder.*key 'remote'"):
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


def test_a_sync_through_the_engine_fetches_only_the_changed_file(dav, make_config):
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    env = dav.rclone_env()
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
