"""Issue 3's acceptance, per source kind: `f2git sync --json` snapshots a course, the real
f2git server serves exactly that snapshot, and nbgitpuller pulls it into a student's folder.

Each source runs against the fake or real server its connector tests use (Canvas, Stud.IP
and Zenodo as `responses` fakes, so the CLI runs in-process; ILIAS on sabre/dav with ILIAS's
node rules, rclone on `rclone serve webdav`; `http` on a real file server; `local` on a folder). The course holds a nested
folder with a non-ASCII name and a space, a binary file and, where the source has release
rules (Canvas, Stud.IP, Moodle), one unreleased file that must reach no student. Then the instructor
edits one file, the CLI syncs again, and a second pull brings the edit while keeping the
student's own edit to another file.
"""
from __future__ import annotations

import json
import os
import subprocess
import tomllib
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import pytest
import responses

from f2git import cli, status
from f2git.config import Config, parse
from tests.archivefiles import zip_bytes
from tests.canvasfake import FakeCanvas
from tests.httpserver import FileServer
from tests.iliasdav import IliasDav
from tests.lms_contract import SECRET_BYTES, SECRET_NAME
from tests.moodlefake import FakeMoodle
from tests.rcloneserve import RcloneWebDav
from tests.repohelpers import Student, git, machine_git_config_ignored  # noqa: F401 (autouse fixture)
from tests.serverhelpers import RunningServer
from tests.studipfake import FakeStudip
from tests.webdav import write_tree
from tests.zenodofake import API as ZENODO_API, record_json

COURSE = "kurs1"
EXERCISE = "Übung 1/aufgabe.ipynb"
RELEASED = {
    "README.md": b"# Einf\xc3\xbchrung\n\nWillkommen.\n",
    EXERCISE: b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n',
    "daten/messung.bin": bytes(range(256)) + b"\r\n\x00end",
}
# Longer than the original: sources that version by modification time to the second and
# size (WebDAV, local) see the edit even within the same second.
EDITED = b'{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["Aufgabe 2"]}], ' \
         b'"metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
STUDENT_README = b"# Einf\xc3\xbchrung\n\nMeine Notizen zur Vorlesung.\n"
DAV_PASSWORD = "Dav-E2E-Secret-Pw-93b1"


class Source:
    """One source kind holding the course: `start` publishes RELEASED (plus anything
    unreleased) and returns the course's TOML table; `edit` is one instructor change."""

    secret: str  # a credential value that must never reach output or a student

    def __init__(self, stack: ExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.stack, self.tmp_path, self.monkeypatch = stack, tmp_path, monkeypatch

    def setenv(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)

    def responses_mock(self) -> responses.RequestsMock:
        mock = self.stack.enter_context(responses.RequestsMock(assert_all_requests_are_fired=False))
        mock.add_passthru("http://127.0.0.1")  # f2git's own server and git are never faked
        return mock


class Local(Source):
    secret = ""

    def start(self) -> dict:
        self.root = self.tmp_path / "Kursordner"
        write_tree(self.root, RELEASED)
        return {"source": "local", "path": str(self.root)}

    def edit(self, path: str, content: bytes) -> None:
        write_tree(self.root, {**RELEASED, path: content})


class Http(Source):
    secret = ""

    def start(self) -> dict:
        self.server = self.stack.enter_context(FileServer())
        self.server.put("/kurs.zip", zip_bytes(RELEASED, top="kurs-2026/"), content_type="application/zip")
        return {"source": "http", "url": self.server.url("/kurs.zip")}

    def edit(self, path: str, content: bytes) -> None:
        self.server.put("/kurs.zip", zip_bytes({**RELEASED, path: content}, top="kurs-2026/"),
                        content_type="application/zip")


class Lms(Source):
    """Canvas and Stud.IP: a teacher's account sees everything, f2git applies the release rules."""

    fake_class: type

    @property
    def secret(self) -> str:
        return self.fake_class.secret

    def start(self) -> dict:
        self.fake = self.fake_class(self.responses_mock())
        self.fake.publish(RELEASED)
        self.hold_back()
        self.setenv(self.fake_class.env)
        return self.fake_class.course_table()

    def edit(self, path: str, content: bytes) -> None:
        self.fake.put(path, content)


class Canvas(Lms):
    fake_class = FakeCanvas

    def hold_back(self) -> None:
        self.fake.put(f"Übung 1/{SECRET_NAME}", SECRET_BYTES, locked=True)  # unpublished


class Studip(Lms):
    fake_class = FakeStudip

    def hold_back(self) -> None:
        self.fake.put(f"Abgaben/{SECRET_NAME}", SECRET_BYTES)
        self.fake.folder("Abgaben", "HomeworkFolder", permission=3)  # the students' submissions


class Moodle(Lms):
    fake_class = FakeMoodle

    def hold_back(self) -> None:
        self.fake.put(f"Übung 1/Lösungen/{SECRET_NAME}", SECRET_BYTES, visible=0)  # a hidden folder module


class Zenodo(Source):
    """A concept record whose versions each hold one zip, as a GitHub release makes them."""

    secret = ""
    concept = 10650000

    def start(self) -> dict:
        self.mock = self.responses_mock()
        self.version = self.concept
        self.publish(RELEASED)
        return {"source": "zenodo", "record": f"10.5281/zenodo.{self.concept}"}

    def publish(self, files: dict[str, bytes]) -> None:
        self.version += 1
        key = "lehrstuhl/kurs-v1.zip"
        archive = {key: zip_bytes(files, top="kurs-v1/")}
        latest = f"{ZENODO_API}/records/{self.concept}/versions/latest"
        new = f"{ZENODO_API}/records/{self.version}"
        if self.version == self.concept + 1:
            self.mock.add("GET", latest, status=302, headers={"Location": new})
        else:
            self.mock.replace("GET", latest, status=302, headers={"Location": new})
        self.mock.add("GET", new, json=record_json(self.version, archive, concept=self.concept))
        self.mock.add("GET", f"{new}/files/{quote(key)}/content", body=archive[key],
                      content_type="application/octet-stream")

    def edit(self, path: str, content: bytes) -> None:
        self.publish({**RELEASED, path: content})


class Ilias(Source):
    """ILIAS's WebDAV shows a student account only what it may read: no unreleased case."""

    secret = DAV_PASSWORD

    def start(self) -> dict:
        self.dav = self.stack.enter_context(IliasDav(
            self.tmp_path / "ilias", prefix="/webdav.php/uni/ref_4711", username="test.student", password=DAV_PASSWORD))
        self.dav.publish(RELEASED)
        self.setenv({"ILIAS_USER": self.dav.username, "ILIAS_PASSWORD": DAV_PASSWORD})
        return {"source": "ilias", "webdav_url": self.dav.url,
                "username_env": "ILIAS_USER", "password_env": "ILIAS_PASSWORD"}

    def edit(self, path: str, content: bytes) -> None:
        self.dav.publish({**RELEASED, path: content})


class Rclone(Source):
    """A Nextcloud-like WebDAV folder, the remote configured by rclone's own variables."""

    secret = DAV_PASSWORD

    def start(self) -> dict:
        self.root = self.tmp_path / "cloud"
        write_tree(self.root / "Lehre" / "Kurs 2026", RELEASED)
        self.dav = self.stack.enter_context(RcloneWebDav(self.root, username="lecturer", password=DAV_PASSWORD))
        self.setenv(self.dav.rclone_env("KURSDATEIEN"))  # HOME too: no user rclone.conf leaks in
        return {"source": "rclone", "remote": "kursdateien:Lehre/Kurs 2026"}

    def edit(self, path: str, content: bytes) -> None:
        write_tree(self.root / "Lehre" / "Kurs 2026", {**RELEASED, path: content})


SOURCES = {"local": Local, "http": Http, "canvas": Canvas, "studip": Studip, "ilias": Ilias,
           "zenodo": Zenodo, "rclone": Rclone, "moodle": Moodle}


def toml_value(value) -> str:
    # JSON strings, integers and booleans are valid TOML values.
    return json.dumps(value)


def write_config(path: Path, course: dict) -> Path:
    lines = ["[server]", 'data_dir = "data"', "refresh_ttl = 3600", "",
             f"[courses.{COURSE}]", "schedule = 0"]
    lines += [f"{key} = {toml_value(value)}" for key, value in course.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def serving(config_path: Path):
    """The server's `make_config(port)`: the very file the CLI synced with, on `port`."""
    def make(port: int) -> Config:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        data["server"]["port"] = port
        return parse(data, config_path, os.environ)
    return make


def cli_sync(config_path: Path, capsys) -> tuple[dict, str]:
    """`f2git --config PATH sync --json`, in-process: (the course's JSON line, all output)."""
    code = cli.main(["--config", str(config_path), "sync", "--json"])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 0, output
    lines = [line for line in captured.out.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return json.loads(lines[0]), output


def checkout(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file() and ".git" not in path.relative_to(folder).parts}


def served_commit(url: str) -> str:
    out = git("ls-remote", url, "refs/heads/main").stdout.decode().split()
    assert out, f"{url} serves no main branch"
    return out[0]


def everything_in_clone(folder: Path) -> bytes:
    """The student's clone as git stores it: every object and the history of every ref."""
    objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=folder,
                             capture_output=True, check=True).stdout
    return objects + git("log", "--all", "--stat", cwd=folder).stdout


@pytest.mark.parametrize("kind", list(SOURCES))
def test_a_course_syncs_through_the_cli_is_served_and_pulled_by_nbgitpuller(kind, tmp_path, monkeypatch, capsys):
    with ExitStack() as stack:
        source = SOURCES[kind](stack, tmp_path, monkeypatch)
        config_path = write_config(tmp_path / "f2git.toml", source.start())

        first, output = cli_sync(config_path, capsys)
        assert (first["course"], first["ok"], first["changed"]) == (COURSE, True, True), first
        assert (first["added"], first["modified"], first["deleted"]) == (len(RELEASED), 0, 0), first
        if source.secret:
            assert source.secret not in output
        assert SECRET_NAME not in output

        server = stack.enter_context(RunningServer(serving(config_path)))
        checked = status.read(server.config, COURSE).last_check
        assert served_commit(server.git_url(COURSE)) == first["commit"]

        student = Student(server.git_url(COURSE), tmp_path / "home" / "Kurs 1")
        student.click()
        assert status.read(server.config, COURSE).last_check == checked  # the server did not sync
        assert checkout(student.path) == RELEASED
        assert git("rev-parse", "origin/main", cwd=student.path).stdout.decode().strip() == first["commit"]
        stored = everything_in_clone(student.path)
        assert SECRET_NAME.encode() not in stored and SECRET_BYTES not in stored
        if source.secret:
            assert source.secret.encode() not in stored

        # The student's own work, then one instructor edit synced by the CLI.
        (student.path / "README.md").write_bytes(STUDENT_README)
        source.edit(EXERCISE, EDITED)
        second, output = cli_sync(config_path, capsys)
        assert (second["ok"], second["changed"]) == (True, True), second
        assert (second["added"], second["modified"], second["deleted"]) == (0, 1, 0), second
        assert second["commit"] != first["commit"]
        assert served_commit(server.git_url(COURSE)) == second["commit"]
        checked = status.read(server.config, COURSE).last_check

        student.click()
        assert status.read(server.config, COURSE).last_check == checked
        assert checkout(student.path) == {**RELEASED, EXERCISE: EDITED, "README.md": STUDENT_README}
        assert git("rev-parse", "origin/main", cwd=student.path).stdout.decode().strip() == second["commit"]
        stored = everything_in_clone(student.path)
        assert SECRET_NAME.encode() not in stored and SECRET_BYTES not in stored
