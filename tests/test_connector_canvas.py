"""The Canvas connector against `FakeCanvas` (tests/canvasfake.py), a `responses` fake of the
Canvas Files API whose answers canvas-lms's own serializers build (ported in
tests/fixtures/canvas/serializers.py), for a teacher's token or a student's.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from connectors import SourceError
from f2git.config import ConfigError, parse
from tests.canvasfake import BASE, COURSE, NOW, TOKEN, fake, iso  # noqa: F401 (fixture)
from tests.conformance import read_all
from tests.fixtures.canvas.serializers import STUDENT, TEACHER, attachment_json
from tests.lms_contract import LmsConformance, LmsContract, listed

SECRET_NAME = "exam-solutions.ipynb"


class TestCanvasLmsContract(LmsContract):
    credential_hint = "$CANVAS_TOKEN"


class TestCanvasConformance(LmsConformance):
    pass


# --- release rules ------------------------------------------------------------------------

FUTURE = NOW + timedelta(days=3)
PAST = NOW - timedelta(days=3)

UNRELEASED = {
    "file hidden (only with link)": ("file", {"hidden": True}),
    "file unpublished": ("file", {"locked": True}),
    "file unlocks later": ("file", {"unlock_at": iso(FUTURE)}),
    "file locked since": ("file", {"lock_at": iso(PAST)}),
    "folder hidden": ("folder", {"hidden": True}),
    "folder unpublished": ("folder", {"locked": True}),
    "folder unlocks later": ("folder", {"unlock_at": iso(FUTURE)}),
    "folder locked since": ("folder", {"lock_at": iso(PAST)}),
    "folder for submissions": ("folder", {"for_submissions": True}),
    "top folder unpublished": ("top", {"locked": True}),
}
RELEASED_FILE = {"hidden": False, "locked": False, "unlock_at": None, "lock_at": None, "module_locked": False}
RELEASED_FOLDER = {"hidden": False, "locked": False, "unlock_at": None, "lock_at": None, "for_submissions": False}


@pytest.mark.parametrize("viewer", [TEACHER, STUDENT])
@pytest.mark.parametrize("case", sorted(UNRELEASED))
def test_unreleased_files_appear_nowhere(fake, case, viewer):
    """Whose token it is, Canvas's answer differs (a teacher's lists everything, with URLs);
    the released files are the same."""
    target, settings = UNRELEASED[case]
    fake.viewer = viewer
    fake.publish({"README.md": b"hi", "exams/notes.txt": b"n", f"exams/sub/{SECRET_NAME}": b"{}"})
    secret = fake.files[f"exams/sub/{SECRET_NAME}"]
    {"file": secret, "folder": fake.folders["exams/sub"], "top": fake.folders["exams"]}[target].update(**settings)
    listing = fake.connector().list({})
    paths = sorted(entry.path for entry in listing.entries)
    assert SECRET_NAME not in json.dumps([paths, [s.path for s in listing.skipped], listing.state])
    assert "README.md" in paths
    assert ("exams/notes.txt" in paths) == (target != "top")
    # Released again, the file is listed: the rule above is what held it back.
    secret.update(**RELEASED_FILE)
    for path in ("exams", "exams/sub"):
        fake.folders[path].update(**RELEASED_FOLDER)
    assert f"exams/sub/{SECRET_NAME}" in listed(fake.connector())


def test_a_module_requirement_is_per_student_and_only_a_student_token_shows_it(fake):
    """Canvas's teacher view carries no module lock (locked_for? is false for :read_as_admin):
    a module prerequisite holds a file back only from a student token (README, Canvas)."""
    fake.publish({"week1/lab.ipynb": b"{}"})
    fake.files["week1/lab.ipynb"].update(module_locked=True)
    assert set(listed(fake.connector())) == {"week1/lab.ipynb"}
    fake.viewer = STUDENT
    assert listed(fake.connector()) == {}


def test_a_teacher_token_gets_the_url_of_an_unpublished_file_and_the_connector_withholds_it(fake):
    fake.publish({"draft.ipynb": b"{}", "ok.txt": b"ok"})
    fake.files["draft.ipynb"].update(locked=True)
    answer = attachment_json(fake.files["draft.ipynb"], TEACHER, BASE, NOW)
    assert answer["url"] and answer["locked"] and not answer["locked_for_user"]  # Canvas's teacher view
    assert set(listed(fake.connector())) == {"ok.txt"}


def test_released_inside_the_availability_window(fake):
    fake.put("week1/lab.ipynb", b"{}", unlock_at=iso(PAST), lock_at=iso(FUTURE))
    fake.folders["week1"].update(unlock_at=iso(PAST - timedelta(days=1)))
    assert set(listed(fake.connector())) == {"week1/lab.ipynb"}


def test_include_hidden_releases_link_only_files_and_folders_but_not_unpublished_ones(fake):
    fake.put("links/slides.pdf", b"%PDF", hidden=True)
    fake.folders["links"].update(hidden=True)
    fake.put("links/draft.pdf", b"%PDF", locked=True)
    fake.put("later.txt", b"x", hidden=True, unlock_at=iso(FUTURE))
    assert listed(fake.connector()) == {}
    assert set(listed(fake.connector(include_hidden=True))) == {"links/slides.pdf"}


# --- the folder option -------------------------------------------------------------------

def test_folder_option_releases_that_folder_alone_as_the_root(fake):
    fake.publish({"README.md": b"r", "week1/data/x.csv": b"1", "week1/data/raw/y.csv": b"2",
                  "week1/intro.ipynb": b"{}"})
    connector = fake.connector(folder="/week1/data/")
    assert set(listed(connector)) == {"x.csv", "raw/y.csv"}
    assert read_all(connector, listed(connector)["raw/y.csv"]) == b"2"


# --- paging, errors, throttling ------------------------------------------------------------

def test_listing_follows_every_page(fake):
    files = {f"f{i:02}.txt": bytes([i]) for i in range(11)}
    fake.publish(files)
    assert set(listed(fake.connector())) == set(files)
    pages = [r for r in fake.api_requests if "/files" in r.url]
    assert len(pages) == 6  # 11 files, 2 per page
    assert all("per_page=100" in r.url for r in pages)


@pytest.mark.parametrize("throttle", [
    (403, {"Content-Type": "text/plain"}, "403 Forbidden (Rate Limit Exceeded)\n"),
    (429, {"Retry-After": "3"}, "Too Many Requests"),
])
def test_throttling_backs_off_then_succeeds(fake, throttle):
    fake.publish({f"f{i}.txt": b"x" for i in range(5)})
    fake.injected[("folders", 1)] = [throttle, throttle]
    connector = fake.connector()
    assert len(listed(connector)) == 5
    assert len(connector.sleeps) == 2 and all(s > 0 for s in connector.sleeps)
    if throttle[0] == 429:
        assert min(connector.sleeps) >= 3  # Retry-After honoured


def test_a_nearly_empty_rate_limit_bucket_slows_requests_down(fake):
    fake.publish({"a.txt": b"a"})
    fake.rate_limit_remaining = "35.5"
    connector = fake.connector()
    listed(connector)
    assert connector.sleeps and all(s > 0 for s in connector.sleeps)
    fake.rate_limit_remaining = "650.0"
    calm = fake.connector()
    listed(calm)
    assert calm.sleeps == []


@pytest.mark.parametrize("answer", [{"errors": []}, [{"name": "week1", "parent_folder_id": None}]])
def test_answers_not_shaped_like_the_files_api_are_a_source_error(fake, answer):
    fake.publish({"a.txt": b"a"})
    fake.injected[("folders", 1)] = [(200, {"Content-Type": "application/json"}, json.dumps(answer))]
    with pytest.raises(SourceError, match="expected a list|unexpected shape"):
        fake.connector().list({})


# --- downloads ----------------------------------------------------------------------------

def test_download_follows_the_redirect_without_sending_the_token_to_the_files_host(fake):
    fake.publish({"week1/data.bin": bytes(range(256)) * 40})
    connector = fake.connector()
    entry = listed(connector)["week1/data.bin"]
    assert read_all(connector, entry) == bytes(range(256)) * 40
    (files_request,) = fake.file_host_requests
    assert "Authorization" not in files_request.headers
    assert TOKEN not in files_request.url
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in fake.api_requests)


def test_download_that_breaks_off_is_an_error(fake):
    fake.publish({"a.bin": b"x" * 1000})
    connector = fake.connector()
    entry = listed(connector)["a.bin"]
    fake.content[fake.files["a.bin"].id] = b"x" * 10  # the files host sends less than Canvas said
    with pytest.raises(SourceError, match="expected 1000"):
        read_all(connector, entry)


# --- versions and release times -----------------------------------------------------------

def test_next_release_is_the_earliest_future_unlock_of_a_file_that_will_be_visible(fake):
    fake.publish({"now.txt": b"n"})
    fake.put("soon.txt", b"s", unlock_at=iso(NOW + timedelta(hours=5)))
    fake.put("later/a.txt", b"l")
    fake.folders["later"].update(unlock_at=iso(NOW + timedelta(hours=2)))
    fake.put("later/b.txt", b"l", unlock_at=iso(NOW + timedelta(hours=1)))  # waits for its folder
    fake.put("never.txt", b"x", locked=True, unlock_at=iso(NOW + timedelta(minutes=5)))
    fake.put("closes.txt", b"x", unlock_at=iso(NOW + timedelta(hours=1)), lock_at=iso(NOW + timedelta(minutes=30)))
    fake.put("old.txt", b"x", unlock_at=iso(PAST))
    connector = fake.connector()
    listing = connector.list({})
    assert {e.path for e in listing.entries} == {"now.txt", "old.txt"}
    assert listing.next_release == NOW + timedelta(hours=2)
    assert listing.next_release.tzinfo is not None
    connector.now = lambda: NOW + timedelta(hours=2)
    later = connector.list({})
    assert {e.path for e in later.entries} == {"now.txt", "old.txt", "later/a.txt", "later/b.txt"}
    assert later.next_release == NOW + timedelta(hours=5)


def test_next_release_with_a_student_token_that_sees_upcoming_files_as_locked_for_it(fake):
    fake.viewer = STUDENT
    fake.publish({"now.txt": b"n"})
    fake.put("soon.txt", b"s", unlock_at=iso(NOW + timedelta(hours=4)))
    fake.put("prereq.txt", b"p", module_locked=True)
    assert attachment_json(fake.files["soon.txt"], STUDENT, BASE, NOW)["url"] == ""  # Canvas's student view
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["now.txt"]
    assert listing.next_release == NOW + timedelta(hours=4)


def test_nothing_to_come_means_no_next_release(fake):
    fake.publish({"a.txt": b"a"})
    assert fake.connector().list({}).next_release is None


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["7~Tök€n", "7~token with space", "7~token\r\nX-Evil: 1", "7~caf\udce9"])
def test_a_token_no_canvas_issues_is_a_clear_error_and_never_sent(fake, token):
    """Canvas tokens are printable ASCII; anything else is a copy error, said in words."""
    fake.publish({"a.txt": b"a"})
    connector = fake.connector()
    connector.env = {"CANVAS_TOKEN": token}
    with pytest.raises(SourceError, match=r"access token in \$CANVAS_TOKEN holds") as caught:
        connector.list({})
    assert token not in str(caught.value) and fake.api_requests == []


def test_config_table_builds_validated_options(tmp_path):
    table = {"courses": {"cs101": {"source": "canvas", "url": BASE, "course_id": COURSE,
                                   "token_env": "CANVAS_TOKEN", "folder": "week1", "include_hidden": True}}}
    config = parse(table, tmp_path / "f2git.toml", {"CANVAS_TOKEN": TOKEN})
    options = config.courses["cs101"].options
    assert (options.url, options.course_id, options.folder, options.include_hidden) == (BASE, COURSE, "week1", True)
    with pytest.raises(ConfigError, match="CANVAS_TOKEN"):
        parse(table, tmp_path / "f2git.toml", {})
    bad = {"courses": {"cs101": {"source": "canvas", "url": "canvas.example.edu", "course_id": "1",
                                 "token_env": "CANVAS_TOKEN"}}}
    with pytest.raises(ConfigError, match="key 'url'"):
        parse(bad, tmp_path / "f2git.toml", {"CANVAS_TOKEN": TOKEN})
