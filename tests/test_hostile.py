"""Hostile input from sources: file names, archives and API answers. Each gets a clear
error or a reported skip, the repo stays fsck-clean, students' git can check it out,
and nothing is written outside the course repo."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f2git.config import ConfigError, parse
from f2git.paths import MAX_NAME_BYTES, UnsafePath, safe_path
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.httpserver import FileServer
from tests.repocheck import fsck_clean


def checkout(repo: CourseRepo, target: Path) -> dict[str, bytes]:
    """What a student's git gets: a real clone (git refuses paths unsafe on any OS here)."""
    subprocess.run(["git", "-c", "core.protectNTFS=true", "-c", "core.protectHFS=true", "clone", "-q",
                    str(repo.path), str(target)], check=True, capture_output=True)
    return {p.relative_to(target).as_posix(): p.read_bytes()
            for p in target.rglob("*") if p.is_file() and ".git" not in p.relative_to(target).parts[:1]}


def files_outside(root: Path, before: set[str]) -> set[str]:
    return {str(p) for p in root.rglob("*")} - before


# --- file names ---------------------------------------------------------------------------

TRICKY_PARTS = [
    ".git", ".GIT", ".Git", ".gitmodules", ".GITMODULES", ".gitattributes", ".gitattributes ",
    ".git.", ".git ", "git~1", "GIT~1", ".git:stream", ".git::$INDEX_ALLOCATION", ".g\u200cit",
    "\ufeff.git", "..", ".", "", "a", "A", "Lösung", "Lo\u0308sung", "x" * 255, "x" * 256,
    "é" * 128, 'quote"d', "sp ace", " lead", "trail ", "star*", "co:lon", "CON", "aux.txt",
    "tab\t", "nul\x00", "bell\x07", "del\x7f", "c1\x85", "back\\slash", "😀", "\u202etxt.exe",
    "-rf", "~", "$HOME", "%2e%2e", "ﬁle",
]
part = st.one_of(st.sampled_from(TRICKY_PARTS), st.text(min_size=1, max_size=12))
name = st.builds(lambda lead, parts: lead + "/".join(parts),
                 st.sampled_from(["", "", "", "/", "./"]), st.lists(part, min_size=1, max_size=4))


def assert_safe_snapshot(repo: CourseRepo, files: dict[str, bytes], skipped: set[str], workdir: Path) -> None:
    """The promises that hold for any list of names."""
    fsck_clean(repo)
    written = repo.files(repo.head())
    folded_files = {path.casefold() for path in written}
    folded_folders = {"/".join(path.split("/")[:depth]).casefold()
                      for path in written for depth in range(1, path.count("/") + 1)}
    for path in written:
        assert safe_path(path) == path
    assert len(folded_files) == len(written), "case twins written"
    assert not folded_files & folded_folders, "a name is a file and (in other letter case) a folder"
    # Every released name is written under its safe form or reported, never dropped silently.
    by_safe: dict[str, list[str]] = {}
    for raw in files:
        try:
            by_safe.setdefault(safe_path(raw), []).append(raw)
        except UnsafePath:
            assert raw in skipped, raw
    for safe, raws in by_safe.items():
        if safe in written:
            continue
        assert all(raw in skipped or safe in skipped for raw in raws), raws
    checked_out = checkout(repo, workdir)
    assert set(checked_out) == set(written)
    for path, body in checked_out.items():
        assert body in [files[raw] for raw in by_safe[path]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(name, min_size=1, max_size=12))
def test_any_names_sync_safely(memory_source, names):
    files = {raw: f"content of {raw!r}".encode("utf-8", "surrogateescape") for raw in names}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        memory_source("any", files)
        config = parse({"server": {"data_dir": str(root / "data")},
                        "courses": {"any": {"source": "memory", "bucket": "any"}}}, root / "f2git.toml", {})
        result = sync_course(config, config.courses["any"])
        assert result.ok, result.error
        assert set(os.listdir(root)) == {"data"}
        skipped = {s.path for s in result.skipped}
        assert_safe_snapshot(CourseRepo.for_course(config, "any"), files, skipped, root / "student")


@pytest.fixture
def course(memory_source, make_config, tmp_path):
    bucket = memory_source("names")
    config = make_config({"names": {"source": "memory", "bucket": "names"}})

    def sync(files: dict[str, bytes]):
        bucket.files = dict(files)
        result = sync_course(config, config.courses["names"])
        assert result.ok, result.error
        repo = CourseRepo.for_course(config, "names")
        target = tmp_path / f"student{len(repo.log())}-{os.urandom(3).hex()}"
        assert_safe_snapshot(repo, files, {s.path for s in result.skipped}, target)
        return result, checkout(repo, tmp_path / f"check-{os.urandom(3).hex()}")

    return sync


def test_a_file_becomes_a_folder_and_back(course):
    _, tree = course({"notes": b"a file", "x.txt": b"x"})
    assert tree == {"notes": b"a file", "x.txt": b"x"}
    _, tree = course({"notes/week1.md": b"now a folder", "x.txt": b"x"})
    assert tree == {"notes/week1.md": b"now a folder", "x.txt": b"x"}
    _, tree = course({"notes": b"a file again", "x.txt": b"x"})
    assert tree == {"notes": b"a file again", "x.txt": b"x"}


def test_a_file_and_a_folder_of_the_same_name_in_one_listing_keeps_the_file(course):
    result, tree = course({"data": b"file", "data/x.csv": b"below", "Data/y.csv": b"case twin folder"})
    assert tree == {"data": b"file"}
    reasons = {s.path: s.reason for s in result.skipped}
    assert "data is a file" in reasons["data/x.csv"]
    assert "Data/y.csv" in reasons


def test_unicode_and_case_twins_keep_one_and_report_the_other(course):
    nfd = unicodedata.normalize("NFD", "Übung.ipynb")
    result, tree = course({"Übung.ipynb": b"nfc", nfd: b"nfd", "README.md": b"1", "ReadMe.md": b"2"})
    assert set(tree) == {"Übung.ipynb", "README.md"} or set(tree) == {"Übung.ipynb", "ReadMe.md"}
    assert len(result.skipped) == 2
    # A rename that only changes letter case is a rename, not a twin.
    result, tree = course({"Übung.ipynb": b"nfc", "readme.md": b"3"})
    assert tree == {"Übung.ipynb": b"nfc", "readme.md": b"3"} and not result.skipped


def test_long_names_and_paths(course):
    longest = "n" * MAX_NAME_BYTES
    deep = "/".join(["d" * 200] * 21)  # 4220 bytes
    result, tree = course({longest: b"ok", "n" * (MAX_NAME_BYTES + 1): b"too long", f"{deep}/f": b"too deep",
                           "é" * 127 + "x": b"ok too"})
    assert set(tree) == {longest, "é" * 127 + "x"}
    reasons = sorted(s.reason for s in result.skipped)
    assert any("255 bytes" in r for r in reasons) and any("4096 bytes" in r for r in reasons)


def test_git_file_tricks_are_all_refused(course):
    tricks = [".git/config", ".GIT/hooks/post-checkout", "sub/.Git/HEAD", ".gitmodules", "x/.GitModules",
              ".gitattributes", "x/.gitattributes.", ".git ./config", "GIT~1/config", ".git::$INDEX_ALLOCATION/x",
              ".git:stream", "\ufeff.gitattributes", ".g\u200dit/config"]
    result, tree = course({**{t: b"[core]\nfsmonitor = evil\n" for t in tricks}, "ok.txt": b"fine"})
    assert tree == {"ok.txt": b"fine"}
    assert {s.path for s in result.skipped} == set(tricks)
    assert all("reserved git name" in s.reason for s in result.skipped)


# Every spelling git's fsck treats as .git or .gitmodules (NTFS 8.3 and hashed short names,
# trailing dots and spaces, streams, HFS+ ignorables, letter case), in all decorations.
_GIT_SPELLINGS = [".git", ".gitmodules", ".gitattributes", ".gitignore", ".mailmap", "git~1", "git~2",
                  "gitmod~1", "gitmod~4", "gitmod~5", "gi7eba~1", "gi7eb~12", "gi7e~123", "gi7eba~0",
                  "gi250a~1", "gitatt~1", "gi7d29~1", "gi~12345"]
GIT_NAME_CANDIDATES = sorted({
    decorated
    for base in _GIT_SPELLINGS for cased in (base, base.upper(), base.title())
    for decorated in [cased + suffix for suffix in ("", ".", " ", ". .", ":x", "::$DATA", "x", "~")]
    + [cased[:1] + "\u200c" + cased[1:], "\ufeff" + cased]})
EVIL_GITMODULES = b'[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n'


def _oid(kind: bytes, body: bytes) -> str:
    return hashlib.sha1(kind + b" %d\0" % len(body) + body).hexdigest()


def test_every_name_git_fsck_treats_as_dot_git_or_gitmodules_is_refused(tmp_path):
    """git itself is the oracle: each candidate name goes into its own tree with a hostile
    .gitmodules body; every one that `git fsck --strict` flags must be refused by safe_path."""
    flagged_by: dict[str, str] = {}
    stream = b""
    for index, name in enumerate(GIT_NAME_CANDIDATES):
        body = EVIL_GITMODULES + b"# %d\n" % index
        blob = _oid(b"blob", body)
        tree = _oid(b"tree", b"100644 " + name.encode() + b"\0" + bytes.fromhex(blob))
        flagged_by[blob] = flagged_by[tree] = name
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        stream += (b"commit refs/t/%d\ncommitter t <t> 0 +0000\ndata 0\nM 100644 inline " % index
                   + quoted.encode() + b"\ndata %d\n" % len(body) + body + b"\n")
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path)], check=True)
    subprocess.run(["git", "--git-dir", str(tmp_path), "fast-import", "--quiet"], input=stream, check=True)
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True)
    flagged = {name for oid, name in flagged_by.items() if oid in fsck.stdout + fsck.stderr}
    assert {"GITMOD~1", "gi7eba~1", ".gitmodules", "git~1"} <= flagged  # the oracle works
    accepted = []
    for name in sorted(flagged):
        try:
            safe_path(name)
            accepted.append(name)
        except UnsafePath:
            pass
    assert accepted == []


def test_short_names_of_gitmodules_never_reach_a_repo(course, tmp_path):
    hostile = {"GITMOD~1": EVIL_GITMODULES, "gi7eba~1": EVIL_GITMODULES, "sub/Gitmod~2 .": EVIL_GITMODULES,
               ".gitmodules::$DATA": EVIL_GITMODULES, "gi7eb~12": EVIL_GITMODULES}
    result, tree = course({**hostile, "ok.txt": b"fine", "gitmod~5": b"an ordinary name"})
    assert tree == {"ok.txt": b"fine", "gitmod~5": b"an ordinary name"}
    assert {s.path for s in result.skipped} == set(hostile)
    # What a student's git (or a git host receiving a push) checks: objects fsck'd on transfer.
    repo = tmp_path / "data" / "repos" / "names.git"
    clone = subprocess.run(["git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--no-local",
                            str(repo), str(tmp_path / "strict")], capture_output=True, text=True)
    assert clone.returncode == 0, clone.stderr


def test_quotes_spaces_and_odd_but_valid_names_arrive_intact(course):
    names = {'say "hi".txt': b"1", " lead.txt": b"2", "trail .txt": b"3", "star*?.md": b"4", "co:lon": b"5",
             "😀/ünï cödé.ipynb": b"6", "-rf": b"7", "%2e%2e": b"8"}
    result, tree = course(names)
    assert tree == names and not result.skipped


# --- archives through the http connector and a sync -------------------------------------------

def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, body in members:
            archive.addfile(info, io.BytesIO(body) if body is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, body: bytes | None = None, **fields) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(body) if body is not None else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, body


@pytest.fixture
def web(make_config, tmp_path):
    with FileServer() as server:
        config = make_config({"web": {"source": "http", "url": server.url("/course.tgz")}})
        yield server, config, CourseRepo.for_course(config, "web")


def test_devices_fifos_and_links_in_an_archive_are_reported_skips(web, tmp_path):
    server, config, repo = web
    server.put("/course.tgz", tar_bytes([
        member("course/dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        member("course/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        member("course/pipe", tarfile.FIFOTYPE),
        member("course/passwd", tarfile.SYMTYPE, linkname="/etc/passwd"),
        member("course/shadow", tarfile.LNKTYPE, linkname="/etc/shadow"),
        member("course/../../escape.txt", body=b"evil"),
        member("course/notes.md", body=b"# notes"),
    ]))
    before = {str(p) for p in tmp_path.rglob("*")}
    result = sync_course(config, config.courses["web"])
    assert result.ok, result.error
    assert repo.files(repo.head()).keys() == {"notes.md"}
    reasons = {s.path: s.reason for s in result.skipped}
    assert len(reasons) == 6
    assert all(reason for reason in reasons.values())
    # Only the repo and the status file appeared; nothing was unpacked anywhere else.
    new = files_outside(tmp_path, before)
    assert all(p.startswith(str(tmp_path / "data")) for p in new), new
    assert not (tmp_path.parent / "escape.txt").exists()
    fsck_clean(repo)


def zip_bytes(files: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for path, body in files.items():
            archive.writestr(path, body)
    return buffer.getvalue()


@pytest.mark.parametrize("bomb, words", [
    (lambda: zip_bytes({"zeros.bin": bytes(64 * 1024 * 1024)}), "expands"),
    (lambda: zip_bytes({f"f{i}": b"" for i in range(10_001)}, zipfile.ZIP_STORED), "more than 10000 entries"),
], ids=["by ratio", "by count"])
def test_zip_bombs_fail_the_sync_and_keep_the_last_snapshot(web, bomb, words):
    server, config, repo = web
    server.put("/course.tgz", zip_bytes({"week1.md": b"week 1"}))
    first = sync_course(config, config.courses["web"])
    assert first.ok
    server.put("/course.tgz", bomb())
    result = sync_course(config, config.courses["web"])
    assert not result.ok and words in result.error and "course.tgz" in result.error
    assert repo.head() == first.commit and len(repo.log()) == 1
    fsck_clean(repo)


# --- API answers ------------------------------------------------------------------------------

CANVAS = "https://canvas.example.edu"
STUDIP = "https://studip.example.de"
ZENODO = "https://zenodo.example.org"
ENV = {"CANVAS_TOKEN": "tok-canvas-1", "STUDIP_USER": "lecturer", "STUDIP_PASSWORD": "pw-studip-1"}

COURSES = {
    "canvas": {"source": "canvas", "url": CANVAS, "course_id": 7, "token_env": "CANVAS_TOKEN"},
    "studip": {"source": "studip", "url": STUDIP, "course_id": "c0ffee", "username_env": "STUDIP_USER",
               "password_env": "STUDIP_PASSWORD"},
    "zenodo": {"source": "zenodo", "url": ZENODO, "record": "123", "latest": False},
}
# The first listing URL of each source, where the hostile answer is served.
FIRST_URL = {"canvas": f"{CANVAS}/api/v1/courses/7/files", "studip": f"{STUDIP}/jsonapi.php/v1/courses/c0ffee/folders",
             "zenodo": f"{ZENODO}/api/records/123"}

JSON = "application/json"
HOSTILE_ANSWERS = {
    "malformed JSON": (200, JSON, "{\"files\": [", "malformed JSON"),
    "HTML error page": (200, "text/html; charset=utf-8", "<html><body>Maintenance</body></html>", "HTML page"),
    "HTML 404 page": (404, "text/html", "<html>Not here</html>", ("404", "HTML page")),
    "empty body": (200, JSON, "", "malformed JSON"),
    "JSON null": (200, JSON, "null", ""),
    "JSON string": (200, JSON, "\"files\"", ""),
    "JSON number": (200, JSON, "42", ""),
}
# Well-formed JSON of the wrong shape, per source: (first answer, more URLs → answers).
WRONG_SHAPES = {
    "canvas": {
        "files is an object": ({}, {}),
        "file is a string": (["a.txt"], {}),
        "file without fields": ([{}], {}),
        "size is a word": ([{"id": 1, "folder_id": 2, "display_name": "a.txt", "url": f"{CANVAS}/f/1", "size": "big"}],
                           {"folders": [{"id": 2, "name": "course files", "parent_folder_id": None}]}),
        "folder without id": ([], {"folders": [{"name": "x"}]}),
        "folder is a list": ([], {"folders": [[1, 2]]}),
        "name is a number": ([{"id": 1, "folder_id": 2, "display_name": 5, "url": f"{CANVAS}/f/1", "size": 1}],
                             {"folders": [{"id": 2, "name": "course files", "parent_folder_id": None}]}),
        "id is an object": ([{"id": {"x": 1}, "folder_id": 2, "display_name": "a", "url": f"{CANVAS}/f/1"}],
                            {"folders": [{"id": 2, "name": "course files", "parent_folder_id": None}]}),
    },
    "studip": {
        "data is an object": ({"data": {}}, {}),
        "folder is a string": ({"data": ["x"]}, {}),
        "folder without id": ({"data": [{"attributes": {"folder-type": "RootFolder"}}]}, {}),
        "meta total is a word": ({"data": [], "meta": {"page": {"total": "many", "offset": 0, "limit": 100}}}, {}),
        "file ref without id": ({"data": [{"id": "root", "type": "folders", "attributes": {
            "folder-type": "RootFolder", "is-visible": True, "is-readable": True, "name": ""}}]},
            {"file-refs": {"data": [{"attributes": {"name": "a.txt", "filesize": 3}}]}}),
        "file size is a word": ({"data": [{"id": "root", "type": "folders", "attributes": {
            "folder-type": "RootFolder", "is-visible": True, "is-readable": True, "name": ""}}]},
            {"file-refs": {"data": [{"id": "f1", "attributes": {"name": "a.txt", "filesize": "big"}}]}}),
        "file name is a list": ({"data": [{"id": "root", "type": "folders", "attributes": {
            "folder-type": "RootFolder", "is-visible": True, "is-readable": True, "name": ""}}]},
            {"file-refs": {"data": [{"id": "f1", "attributes": {"name": ["a"], "filesize": 1}}]}}),
    },
    "zenodo": {
        "files is an empty object": ({"id": 123, "files": {}}, {}),
        "files is a string": ({"id": 123, "files": "all"}, {}),
        "file without key": ({"id": 123, "files": [{"size": 1}]}, {}),
        "size is a word": ({"id": 123, "files": [{"key": "a.txt", "size": "big", "checksum": "md5:x",
                                                  "links": {"self": f"{ZENODO}/f/a"}}]}, {"f/a": b"abc"}),
        "links is a list": ({"id": 123, "files": [{"key": "a.txt", "size": 3, "links": ["x"]}]}, {}),
        "access is a string": ({"id": 123, "access": "open", "metadata": "x", "files": []}, {}),
    },
}


# What the other listing URLs answer unless a case says otherwise: a plain, valid course.
VALID_MORE = {"canvas": {"folders": [{"id": 2, "name": "course files", "parent_folder_id": None}],
                         f"{CANVAS}/f/1": b"abc"},
              "studip": {"file-refs": {"data": []}, f"{STUDIP}/jsonapi.php/v1/file-refs/f1/content": b"abc"},
              "zenodo": {f"{ZENODO}/api/records/123/files/a.txt/content": b"abc"}}


def serve_more(mock: responses.RequestsMock, source: str, more: dict) -> None:
    for key, answer in {**VALID_MORE[source], **more}.items():
        if source == "canvas" and key == "folders":
            url = f"{CANVAS}/api/v1/courses/7/folders"
        elif source == "studip" and key == "file-refs":
            url = f"{STUDIP}/jsonapi.php/v1/folders/root/file-refs"
        else:
            url = key if key.startswith("https://") else f"{ZENODO}/{key}"
        if isinstance(answer, bytes):
            mock.add(responses.GET, url, body=answer, content_type="application/octet-stream")
        else:
            mock.add(responses.GET, url, json=answer)


def quick_retries(connector) -> None:
    """Retries without the backoff waits, so a test of a failing source takes no time."""
    if hasattr(type(connector), "sleep"):  # Canvas, Stud.IP: injectable
        connector.sleep = lambda seconds: None
    else:
        connector.session.sleep = lambda seconds: None


def run_hostile_sync(tmp_path, source: str, serve) -> tuple:
    config = parse({"server": {"data_dir": str(tmp_path / "data")}, "courses": {source: COURSES[source]}},
                   tmp_path / "f2git.toml", ENV)
    course = config.courses[source]
    before = {str(p) for p in tmp_path.rglob("*")}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve(mock)
        connector = course.connector(env=ENV)
        quick_retries(connector)
        result = sync_course(config, course, connector=connector)
        unanswered = [call.request.url for call in mock.calls if isinstance(call.response, Exception)]
        assert not unanswered, "the test must answer every request the connector makes"
    new = files_outside(tmp_path, before)
    assert all(p.startswith(str(tmp_path / "data")) for p in new), new
    return config, result


@pytest.mark.parametrize("answer", sorted(HOSTILE_ANSWERS))
@pytest.mark.parametrize("source", sorted(COURSES))
def test_garbled_api_answers_are_clear_source_errors(tmp_path, monkeypatch, source, answer):
    status, content_type, body, words = HOSTILE_ANSWERS[answer]
    label = {"canvas": "Canvas", "studip": "Stud.IP", "zenodo": "Zenodo"}[source]
    config, result = run_hostile_sync(tmp_path, source, lambda mock: mock.add(
        responses.GET, FIRST_URL[source], status=status, body=body, content_type=content_type))
    words = (words,) if isinstance(words, str) else words
    assert not result.ok and result.error.startswith(label), result.error
    assert any(word in result.error for word in words), result.error
    assert CourseRepo.for_course(config, source).head() is None


@pytest.mark.parametrize("source, case", [(s, c) for s in sorted(WRONG_SHAPES) for c in sorted(WRONG_SHAPES[s])])
def test_wrong_types_and_missing_fields_are_source_errors_or_skips(tmp_path, source, case):
    first, more = WRONG_SHAPES[source][case]

    def serve(mock):
        mock.add(responses.GET, FIRST_URL[source], json=first)
        serve_more(mock, source, more)

    config, result = run_hostile_sync(tmp_path, source, serve)
    repo = CourseRepo.for_course(config, source)
    if result.ok:  # a readable answer: whatever was written is safe and complete
        fsck_clean(repo)
        assert all(safe_path(p) == p for p in repo.files(repo.head()))
    else:
        label = {"canvas": "Canvas", "studip": "Stud.IP", "zenodo": "Zenodo"}[source]
        assert result.error.startswith(label) or f"{label} " in result.error, result.error
        assert repo.head() is None


def test_redirect_loops_are_source_errors(tmp_path):
    for source in sorted(COURSES):
        def serve(mock, source=source):
            hops = iter(range(1000))
            mock.add_callback(responses.GET, re.compile(re.escape(FIRST_URL[source]) + ".*"),
                              callback=lambda request: (302, {"Location": f"{FIRST_URL[source]}?hop={next(hops) % 2}"}, ""))
        _, result = run_hostile_sync(tmp_path / source, source, serve)
        assert not result.ok and "too many redirects" in result.error, (source, result.error)


def test_ilias_garbled_listings_are_source_errors(tmp_path):
    url = "https://ilias.example.org/webdav.php/uni/ref_42/"
    env = {"ILIAS_USER": "student", "ILIAS_PASSWORD": "pw-ilias-1"}
    course = {"source": "ilias", "webdav_url": url, "username_env": "ILIAS_USER", "password_env": "ILIAS_PASSWORD"}
    answers = [
        (207, "application/xml", b"<d:multistatus xmlns:d='DAV:'><d:response>", "unreadable WebDAV listing"),
        (207, "application/xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;'>]>"
                                 b"<x>&b;</x>", "unreadable WebDAV listing"),
        (207, "application/xml", b"<html/>", "expected a DAV:multistatus"),
        (200, "text/html", b"<html>login</html>", "HTML page"),
        (207, "application/xml", b"<d:multistatus xmlns:d='DAV:'><d:response><d:href>/elsewhere/x</d:href>"
                                 b"<d:propstat><d:prop><d:getetag>e</d:getetag></d:prop><d:status>HTTP/1.1 200 OK"
                                 b"</d:status></d:propstat></d:response></d:multistatus>", "outside the course"),
    ]
    hops = iter(range(1000))
    loop = (307, None, lambda request: (307, {"Location": f"{url}?hop={next(hops) % 2}"}, ""), "too many redirects")
    for index, (status, content_type, body, words) in enumerate([*answers, loop]):
        folder = tmp_path / str(index)
        folder.mkdir()
        config = parse({"server": {"data_dir": str(folder / "data")}, "courses": {"il": course}},
                       folder / "f2git.toml", env)
        with responses.RequestsMock() as mock:
            if callable(body):  # 307 keeps the method: a PROPFIND loop
                mock.add_callback("PROPFIND", re.compile(re.escape(url) + ".*"), callback=body)
            else:
                mock.add("PROPFIND", url, status=status, body=body, content_type=content_type)
            result = sync_course(config, config.courses["il"], connector=config.courses["il"].connector(env=env))
        assert not result.ok and result.error.startswith("ILIAS") and words in result.error, result.error
        assert {p.name for p in folder.iterdir()} == {"data"}  # nothing written beside the data dir


# --- config -----------------------------------------------------------------------------------

VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
COURSE_KEYS = ["source", "schedule", "include", "exclude", "max_file_size", "allow_mass_delete", "groups",
               "mirror", "mirror_token_env", "path", "url", "extract", "course_id", "token_env", "folder",
               "include_hidden", "record", "latest", "webdav_url", "username_env", "password_env",
               "not_a_key", "Path", ""]
SERVER_KEYS = ["host", "port", "data_dir", "public_url", "refresh_ttl", "refresh_wait", "auth", "tokens_env",
               "service_name", "hostname", "timeout"]


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(["local", "http", "canvas", "studip", "ilias", "zenodo"]),
       course_extra=st.dictionaries(st.sampled_from(COURSE_KEYS), VALUES, max_size=3),
       server=st.dictionaries(st.sampled_from(SERVER_KEYS), VALUES, max_size=2))
def test_any_config_values_give_a_config_or_one_clear_error(source, course_extra, server):
    table = {"source": source, **course_extra}
    path = Path("/nonexistent/f2git.toml")
    try:
        config = parse({"server": server, "courses": {"c": table}}, path, {"X": "1"})
    except ConfigError as error:
        message = str(error)
        assert message.startswith(str(path)) and "\n" not in message
        return
    # Accepted: the values it kept have the documented types.
    course = config.courses["c"]
    assert isinstance(course.schedule, float) and isinstance(course.max_file_size, int)
    assert isinstance(config.server.port, int) and not isinstance(config.server.port, bool)
