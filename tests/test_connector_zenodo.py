"""Zenodo against `responses` fixtures built by Zenodo's and InvenioRDM's own serializers,
ported in tests/fixtures/zenodo/serializers.py: zenodo.org's default `application/json`
record (zenodo-rdm's ZenodoSchema, whose file links carry the key unencoded), InvenioRDM's
record (FilesSchema: entries without links, left out without the read_files permission) and
its `/api/records/<id>/files` listing (FileSchema with `links.content`). A record's answer,
`record_json`, comes from tests/zenodofake.py, where other tests find it too."""
from __future__ import annotations

import hashlib
import io
import itertools
import zipfile
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import responses

from connectors import AuthError, SourceError
from connectors.zenodo import EmbargoedError, ZenodoConnector, ZenodoOptions
from tests.archivefiles import zip_bytes
from tests.conformance import ConnectorConformance, by_path, read_all
from tests.fixtures.zenodo.serializers import files_endpoint
from tests.zenodofake import API, record_json

TOKEN = "zenodo-token-Distinctive-4c1e"
_ids = itertools.count(10650001, 7)


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def serve_record(record: dict, files: dict[str, bytes], latest_of: int | None = None) -> None:
    record_id = record["id"]
    responses.add("GET", f"{API}/records/{record_id}", json=record)
    if latest_of is not None:
        responses.add("GET", f"{API}/records/{latest_of}/versions/latest", status=302,
                      headers={"Location": f"{API}/records/{record_id}"})
    for key, content in files.items():
        responses.add("GET", f"{API}/records/{record_id}/files/{quote(key)}/content", body=content,
                      content_type="application/octet-stream")


def connector(record: str | int, *, env: dict | None = None, **keys) -> ZenodoConnector:
    options = ZenodoOptions(record=str(record), **keys)
    options.validate()
    made = ZenodoConnector(options, course="c", env={} if env is None else env)
    made.session.sleep = lambda seconds: None  # retries without waiting
    return made


class MockedZenodo(ConnectorConformance):
    """Each test gets its own fake Zenodo; publish() replaces what it answers."""

    @pytest.fixture(autouse=True)
    def _mock(self):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.mock = mock
            yield


class TestZenodoRecord(MockedZenodo):
    """Each publish() is a new version of one concept record, as an instructor's upload is."""

    rdm = False

    def publish(self, files):
        self.mock.reset()
        record_id = next(_ids)
        with_ids = record_json(record_id, files, rdm=self.rdm)
        self.mock.add("GET", f"{API}/records/10650000/versions/latest", status=302,
                      headers={"Location": f"{API}/records/{record_id}"})
        self.mock.add("GET", f"{API}/records/{record_id}", json=with_ids)
        for key, content in files.items():
            self.mock.add("GET", f"{API}/records/{record_id}/files/{quote(key)}/content", body=content)
        return connector("10.5281/zenodo.10650000")


class TestZenodoInvenioRDMShape(TestZenodoRecord):
    rdm = True


@pytest.mark.parametrize("record, expected", [
    ("10650001", "10650001"),
    ("10.5281/zenodo.10650001", "10650001"),
    ("doi:10.5281/ZENODO.10650001", "10650001"),
    ("https://doi.org/10.5281/zenodo.10650001", "10650001"),
    ("https://zenodo.org/records/10650001", "10650001"),
    ("https://zenodo.org/record/10650001", "10650001"),
    ("https://zenodo.org/records/10650001/files/data.zip?download=1", "10650001"),
])
def test_record_may_be_id_doi_or_url(record, expected):
    options = ZenodoOptions(record=record)
    options.validate()
    assert options.record_id() == expected and options.url == "https://zenodo.org"


def test_a_sandbox_record_url_sets_the_site():
    options = ZenodoOptions(record="https://sandbox.zenodo.org/records/123")
    options.validate()
    assert options.url == "https://sandbox.zenodo.org"


@pytest.mark.parametrize("keys, message", [
    ({"record": ""}, "missing key 'record'"),
    ({"record": "10.1000/xyz123"}, "key 'record'"),
    ({"record": "https://zenodo.org/communities/abc"}, "key 'record'"),
    ({"record": "1", "url": "zenodo.org"}, "key 'url'"),
    ({"record": "https://zenodo.org/records/1", "url": "https://data.example.edu"}, "key 'record'.*data.example.edu"),
])
def test_bad_options_name_the_key(keys, message):
    with pytest.raises(ValueError, match=message):
        ZenodoOptions(**keys).validate()


@responses.activate
def test_latest_follows_to_the_newest_version_and_latest_false_keeps_the_named_one():
    old, new = record_json(11, {"a.txt": b"old"}), record_json(12, {"a.txt": b"new"})
    serve_record(old, {"a.txt": b"old"}, latest_of=11)
    serve_record(new, {"a.txt": b"new"})
    responses.replace("GET", f"{API}/records/11/versions/latest", status=302,
                      headers={"Location": f"{API}/records/12"})
    with connector(11) as newest:
        listing = newest.list({})
        assert listing.state == {"record": "12"}
        assert read_all(newest, listing.entries[0]) == b"new"
    with connector(11, latest=False) as pinned:
        assert read_all(pinned, pinned.list({}).entries[0]) == b"old"


@responses.activate
def test_a_concept_id_without_versions_endpoint_falls_back_to_the_record_url():
    responses.add("GET", f"{API}/records/10650000/versions/latest", status=404,
                  json={"status": 404, "message": "The persistent identifier does not exist."})
    record = record_json(10650007, {"x.txt": b"x"})
    responses.add("GET", f"{API}/records/10650000", status=302, headers={"Location": f"{API}/records/10650007"})
    serve_record(record, {"x.txt": b"x"})
    with connector(10650000) as zenodo:
        assert [e.path for e in zenodo.list({}).entries] == ["x.txt"]


@responses.activate
def test_a_download_that_does_not_match_its_md5_fails():
    record = record_json(21, {"a.txt": b"right"})
    record["files"][0]["checksum"] = f"md5:{md5(b'other')}"
    serve_record(record, {"a.txt": b"wrong"})  # same length, other bytes
    with connector(21, latest=False) as zenodo:
        entry = zenodo.list({}).entries[0]
        assert entry.version == f"md5:{md5(b'other')}"
        with pytest.raises(SourceError, match="md5"):
            read_all(zenodo, entry)


@responses.activate
def test_an_embargoed_record_names_the_end_date_and_when_to_expect_files():
    until = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    serve_record(record_json(31, {"a.txt": b"a"}, access_right="embargoed", embargo_date=until), {})
    with connector(31, latest=False) as zenodo, pytest.raises(EmbargoedError) as caught:
        zenodo.list({})
    message = str(caught.value)
    assert "record 31" in message and f"embargo until {until}" in message and "token_env" in message
    assert caught.value.next_release == datetime.fromisoformat(until).replace(tzinfo=timezone.utc)


@responses.activate
def test_an_embargo_past_its_date_says_to_try_again_later():
    serve_record(record_json(32, {"a.txt": b"a"}, rdm=True, access_right="embargoed",
                             embargo_date="2020-01-01"), {})
    with connector(32, latest=False) as zenodo, pytest.raises(EmbargoedError, match="ended on 2020-01-01.*try again later"):
        zenodo.list({})


@responses.activate
def test_a_token_reads_embargoed_files_and_next_release_is_the_embargo_end():
    until = (datetime.now(timezone.utc) + timedelta(days=3)).date().isoformat()
    record = record_json(33, {"a.txt": b"a"}, access_right="open", embargo_date=until)
    record["metadata"]["access_right"] = "embargoed"  # the owner's token sees the files anyway
    serve_record(record, {"a.txt": b"a"})
    with connector(33, latest=False, token_env="ZENODO_TOKEN", env={"ZENODO_TOKEN": TOKEN}) as zenodo:
        listing = zenodo.list({})
        assert [e.path for e in listing.entries] == ["a.txt"]
        assert listing.next_release == datetime.fromisoformat(until).replace(tzinfo=timezone.utc)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@responses.activate
def test_a_restricted_record_asks_for_a_token():
    responses.add("GET", f"{API}/records/41", status=403,
                  json={"status": 403, "message": "You don't have the permission to access the requested resource."})
    with connector(41, latest=False) as zenodo, pytest.raises(AuthError, match="record 41.*restricted.*token_env"):
        zenodo.list({})


@pytest.mark.parametrize("files", [[], None], ids=["empty", "left-out"])
@responses.activate
def test_restricted_files_without_a_file_list_ask_for_a_token(files):
    record = record_json(42, {"a.txt": b"a"}, access_right="restricted")
    if files is None:
        del record["files"]
    serve_record(record, {})
    with connector(42, latest=False) as zenodo, pytest.raises(AuthError, match="record 42 has restricted files.*token_env"):
        zenodo.list({})


@responses.activate
def test_a_rejected_token_is_an_auth_error_without_the_token():
    responses.add("GET", f"{API}/records/43", status=401, json={"status": 401, "message": "Unauthorized"})
    with connector(43, latest=False, token_env="ZENODO_TOKEN", env={"ZENODO_TOKEN": TOKEN}) as zenodo:
        with pytest.raises(AuthError) as caught:
            zenodo.list({})
    assert "ZENODO_TOKEN" in str(caught.value) and TOKEN not in str(caught.value)


@pytest.mark.parametrize("token", ["tök€n", "two words", "line\nbreak"])
@responses.activate
def test_a_token_zenodo_never_issues_is_a_clear_error_and_never_sent(token):
    options = ZenodoOptions(record="45", latest=False, token_env="ZENODO_TOKEN")
    options.validate()
    with ZenodoConnector(options, course="c", env={"ZENODO_TOKEN": token}) as zenodo:
        with pytest.raises(SourceError, match=r"access token in \$ZENODO_TOKEN holds") as caught:
            zenodo.list({})
    assert token not in str(caught.value) and len(responses.calls) == 0


@responses.activate
def test_the_token_never_goes_to_the_storage_host():
    record = record_json(44, {"a.txt": b"a"})
    serve_record(record, {})
    responses.add("GET", f"{API}/records/44/files/a.txt/content", status=302,
                  headers={"Location": "https://storage.example.org/bucket/a.txt?X-Amz-Signature=abc"})
    responses.add("GET", "https://storage.example.org/bucket/a.txt", body=b"a")
    with connector(44, latest=False, token_env="ZENODO_TOKEN", env={"ZENODO_TOKEN": TOKEN}) as zenodo:
        assert read_all(zenodo, zenodo.list({}).entries[0]) == b"a"
    assert responses.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in responses.calls[2].request.headers


@responses.activate
def test_a_record_listing_only_some_files_is_completed_from_the_files_endpoint():
    files = {f"f{i}.txt": str(i).encode() for i in range(3)}
    record = record_json(51, files, rdm=True)
    record["files"]["entries"] = dict(list(record["files"]["entries"].items())[:1])
    serve_record(record, files)
    responses.add("GET", f"{API}/records/51/files", json=files_endpoint(API, 51, files))
    with connector(51, latest=False) as zenodo:
        assert {e.path for e in zenodo.list({}).entries} == set(files)


NAMES_TO_ENCODE = {"Lecture #1.ipynb": b"{}", "what? 100% & more.txt": b"q", "Übung 2 (Lösung).md": b"u"}


@pytest.mark.parametrize("rdm", [False, True], ids=["zenodo-json", "inveniordm"])
@responses.activate
def test_file_names_that_need_percent_encoding_are_downloaded(rdm):
    """zenodo.org's default answer puts keys into its file links unencoded ("…/Lecture #1.ipynb/
    content" would fetch "…/Lecture "); InvenioRDM's record gives no file links at all."""
    serve_record(record_json(52, NAMES_TO_ENCODE, rdm=rdm), {})
    for key, content in NAMES_TO_ENCODE.items():
        responses.add("GET", f"{API}/records/52/files/{quote(key)}/content", body=content)
    with connector(52, latest=False) as zenodo:
        entries = by_path(zenodo.list({}))
        assert {path: read_all(zenodo, entry) for path, entry in entries.items()} == NAMES_TO_ENCODE


@responses.activate
def test_an_html_answer_is_an_error():
    responses.add("GET", f"{API}/records/61", body="<html>maintenance</html>", content_type="text/html")
    with connector(61, latest=False) as zenodo, pytest.raises(SourceError, match="HTML page"):
        zenodo.list({})


@responses.activate
def test_a_deleted_record_says_so():
    responses.add("GET", f"{API}/records/62", status=410, json={"status": 410, "message": "PID has been deleted."})
    with connector(62, latest=False) as zenodo, pytest.raises(SourceError, match="record 62.*deleted"):
        zenodo.list({})


@responses.activate
def test_server_errors_are_retried():
    responses.add("GET", f"{API}/records/63", status=502)
    serve_record(record_json(63, {"a.txt": b"a"}), {"a.txt": b"a"})
    with connector(63, latest=False) as zenodo:
        assert [e.path for e in zenodo.list({}).entries] == ["a.txt"]


# --- a record made of one archive (a GitHub release, a zipped course folder) ---------------

def tar_gzipped(files: dict[str, bytes]) -> bytes:
    import tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class TestZenodoSingleArchiveRecord(MockedZenodo):
    """A record holding one zip is unpacked (extract unset: automatic), its top folder dropped."""

    def publish(self, files):
        self.mock.reset()
        record_id = next(_ids)
        archive = {"owner/course-v1.2.zip": zip_bytes(files, top="course-v1.2/")}
        self.mock.add("GET", f"{API}/records/{record_id}", json=record_json(record_id, archive))
        key = "owner/course-v1.2.zip"
        self.mock.add("GET", f"{API}/records/{record_id}/files/{quote(key)}/content", body=archive[key])
        self.downloads = lambda: sum(call.request.url.endswith("/content") for call in self.mock.calls)
        return connector(record_id, latest=False)

    def test_an_unchanged_archive_is_not_downloaded_again(self):
        with self.publish({"a.txt": b"a", "week1/b.ipynb": b"{}"}) as zenodo:
            first = zenodo.list({})
            assert self.downloads() == 1
            assert first.state["archive"].startswith("md5:")
            again = zenodo.list(first.state)
            assert again.unchanged and self.downloads() == 1

    def test_extract_false_keeps_the_archive_as_a_file(self):
        with self.publish({"a.txt": b"a"}) as zenodo:
            zenodo.options.extract = False
            (entry,) = zenodo.list({}).entries
            assert entry.path == "owner/course-v1.2.zip"
            assert zipfile.ZipFile(io.BytesIO(read_all(zenodo, entry))).namelist() == ["course-v1.2/a.txt"]


@responses.activate
def test_a_tar_gz_record_is_unpacked_and_the_archive_md5_is_checked():
    content = tar_gzipped({"notes/x.md": b"# x\n", "y.csv": b"1,2\n"})
    record = record_json(71, {"course.tar.gz": content})
    serve_record(record, {"course.tar.gz": content})
    with connector(71, latest=False) as zenodo:
        entries = by_path(zenodo.list({}))
        assert set(entries) == {"notes/x.md", "y.csv"}
        assert read_all(zenodo, entries["notes/x.md"]) == b"# x\n"
    record["files"][0]["checksum"] = f"md5:{md5(b'something else')}"
    responses.replace("GET", f"{API}/records/71", json=record)
    with connector(71, latest=False) as zenodo, pytest.raises(SourceError, match="md5"):
        zenodo.list({})


@responses.activate
def test_extract_true_needs_a_single_file_and_says_so():
    files = {"a.zip": zip_bytes({"x": b"x"}, top="course-v1.2/"), "b.txt": b"b"}
    serve_record(record_json(72, files), files)
    with connector(72, latest=False, extract=True) as zenodo, pytest.raises(SourceError, match="key 'extract'.*2 files"):
        zenodo.list({})


@responses.activate
def test_extract_true_on_a_file_that_is_no_archive_fails():
    serve_record(record_json(73, {"data.bin": b"just bytes"}), {"data.bin": b"just bytes"})
    with connector(73, latest=False, extract=True) as zenodo, pytest.raises(SourceError, match="not a zip or tar"):
        zenodo.list({})


@responses.activate
def test_a_single_file_that_is_no_archive_is_served_as_it_is():
    serve_record(record_json(74, {"slides.pdf": b"%PDF"}), {"slides.pdf": b"%PDF"})
    with connector(74, latest=False) as zenodo:
        (entry,) = zenodo.list({}).entries
        assert entry.path == "slides.pdf" and read_all(zenodo, entry) == b"%PDF"


def test_a_course_config_loads_with_its_defaults():
    import tomllib
    from pathlib import Path

    from f2git import config
    table = tomllib.loads('[courses.dl]\nsource = "zenodo"\nrecord = "10.5281/zenodo.10650000"\n')
    options = config.parse(table, Path("f2git.toml"), {}).courses["dl"].options
    assert (options.record_id(), options.url, options.latest, options.extract) == \
        ("10650000", "https://zenodo.org", True, None)
    with pytest.raises(config.ConfigError, match=r"\[courses.dl\] key 'record'"):
        config.parse(tomllib.loads('[courses.dl]\nsource = "zenodo"\nrecord = "zenodo"\n'), Path("f2git.toml"), {})


@responses.activate
def test_an_open_record_without_files_is_an_error_not_an_empty_course():
    serve_record(record_json(75, {}), {})
    with connector(75, latest=False) as zenodo, pytest.raises(SourceError, match="record 75 has no files"):
        zenodo.list({})


@responses.activate
def test_a_new_version_syncs_and_downloads_only_the_files_that_changed(make_config):
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    v1 = {"README.md": b"# v1\n", "week1/intro.ipynb": b"{}", "data/big.csv": b"1,2\n" * 1000}
    v2 = {**v1, "README.md": b"# v2\n", "week2/new.ipynb": b"{}"}
    serve_record(record_json(81, v1), v1, latest_of=80)
    config = make_config({"dl": {"source": "zenodo", "record": "10.5281/zenodo.80"}})
    course = config.courses["dl"]
    assert sync_course(config, course, connector=course.connector({})).ok
    responses.replace("GET", f"{API}/records/80/versions/latest", status=302,
                      headers={"Location": f"{API}/records/82"})
    serve_record(record_json(82, v2), v2)
    before = len(responses.calls)
    second = sync_course(config, course, connector=course.connector({}))
    assert (second.ok, second.added, second.modified, second.deleted) == (True, 1, 1, 0)
    downloaded = sorted(call.request.url for call in responses.calls[before:] if call.request.url.endswith("/content"))
    assert downloaded == [f"{API}/records/82/files/README.md/content", f"{API}/records/82/files/week2/new.ipynb/content"]
    repo = CourseRepo.for_course(config, "dl")
    assert repo.git("cat-file", "blob", f"{second.commit}:README.md") == "# v2\n"
