"""The instructors' dashboard over HTTP: pages, health in words, history, refresh with live
progress (SSE), preview without committing, link builder, XSRF, escaping, auth."""
from __future__ import annotations

import queue
import re
import threading
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

import connectors
from connectors.base import Skipped
from f2git import status
from f2git.config import parse
from f2git.server.dashboard import health, history
from f2git.outcome import SyncResult
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests import memsource
from tests.pagehelpers import events, read_events, xsrf
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer, config_factory

HOSTILE = '<img src=x onerror="alert(1)">&amp;.ipynb'


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "source")
    folder.write("week1/intro.ipynb", '{"cells": []}\n')
    folder.write(HOSTILE, "x\n")
    folder.write("big.csv", "x" * 2000)
    return folder


@pytest.fixture
def server(tmp_path, source):
    make = config_factory(tmp_path, {"demo": {"source": "local", "path": str(source.path), "schedule": 0,
                                              "max_file_size": 1000}}, refresh_ttl=0)
    with RunningServer(make) as running:
        yield running


def test_course_list_shows_each_course_with_source_commit_and_health(server):
    server.post_json("/api/courses/demo/refresh")
    page = requests.get(server.url + "/")
    assert page.status_code == 200
    head = CourseRepo.for_course(server.config, "demo").head()
    row = re.search(r'<tr class="course" data-course="demo">.*?</tr>', page.text, re.S).group(0)
    assert 'href="./courses/demo"' in row and "local folder" in row
    assert head[:10] in row
    assert "health-ok" in row and "Up to date: checked" in row
    assert "<time datetime=" in row  # last check and change, as machine-readable times


def test_course_page_shows_history_skipped_files_and_escapes_hostile_names(server, source):
    server.post_json("/api/courses/demo/refresh")
    source.write("week1/intro.ipynb", '{"cells": [1]}\n')
    source.delete(HOSTILE)
    server.post_json("/api/courses/demo/refresh")
    server.post_json("/api/courses/demo/refresh")  # no change: not worth a line
    page = requests.get(server.url + "/courses/demo").text
    assert "<img src=x" not in page  # a file name never becomes markup
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;.ipynb" in page
    history = re.search(r'<ol class="history">(.*?)</ol>', page, re.S).group(1)
    newest, oldest = re.split(r'<li class="(?:ok|failed)">', history)[1:]
    assert "0 added, 1 changed, 1 deleted" in newest and "week1/intro.ipynb" in newest
    assert "2 added, 0 changed, 0 deleted" in oldest
    skipped = re.search(r'<table class="skipped">.*?</table>', page, re.S).group(0)
    assert "big.csv" in skipped and "larger than max_file_size" in skipped


def test_failing_course_says_what_failed_and_what_students_still_get(make_config, memory_source):
    memory_source("lms", {"a.txt": b"a"})
    config = make_config({"cs101": {"source": "memory", "bucket": "lms"}})
    course = config.courses["cs101"]
    good = sync_course(config, course)
    memsource.BUCKETS["lms"].fail_listing = "memory: the server answered 503 at lms.example.edu"
    sync_course(config, course)
    record = status.read(config, "cs101")
    said = health(course, record, record.last_error_at + 5)
    text = "".join(str(part) for part in said.sentence)
    assert said.state == "failing" and record.commit == good.commit
    assert text.startswith("The sync on ") and " failed — students still get the snapshot of " in text
    assert said.detail == "memory: the server answered 503 at lms.example.edu"


def test_rejected_credentials_are_named_with_the_lms_and_the_snapshot_date(make_config):
    config = make_config({"cs101": {"source": "canvas", "url": "https://canvas.example.edu", "course_id": 4242,
                                    "token_env": "CANVAS_TOKEN"}}, env={"CANVAS_TOKEN": "7~secret"})
    course = config.courses["cs101"]
    status.record(config, SyncResult("cs101", ok=True, changed=True, commit="c" * 40,
                                     skipped=[Skipped("x", "y")]), started=1763663400.0)  # 20 Nov 2025 18:30
    status.record(config, SyncResult("cs101", ok=False, auth_failed=True,
                                     error="Canvas: rejected the credentials (401)"), started=1763719320.0)
    record = status.read(config, "cs101")
    record.commit = "c" * 40  # as if the repo held the snapshot the status names
    text = "".join(str(part) for part in health(course, record, 1763719400.0).sentence)
    assert text == ("Canvas rejected the credentials on 21 Nov 10:02 UTC"
                    " — students still get the snapshot of 20 Nov 18:30 UTC")


def test_refresh_needs_the_xsrf_token_and_without_javascript_returns_to_the_course(server, source):
    session = requests.Session()
    refused = session.post(server.url + "/courses/demo/refresh", allow_redirects=False)
    assert refused.status_code == 403 and CourseRepo.for_course(server.config, "demo").head() is None
    token = xsrf(session, server.url + "/courses/demo")
    answer = session.post(server.url + "/courses/demo/refresh", data={"_xsrf": token}, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == "../demo"
    finished = events(session, server.url + "/courses/demo/events")[-1]
    assert finished["phase"] == "finished" and finished["ok"]
    assert finished["commit"] == CourseRepo.for_course(server.config, "demo").head()


class GatedConnector(memsource.MemoryConnector):
    """A memory source whose downloads each wait for the test to let them through."""

    gate = threading.Semaphore(0)

    def open(self, entry):
        assert self.gate.acquire(timeout=30), "the test never let the download through"
        return super().open(entry)


def test_refresh_streams_each_file_then_the_result(tmp_path, memory_source, monkeypatch):
    monkeypatch.setitem(connectors.SOURCES, "gated", "tests.test_dashboard:GatedConnector")
    memory_source("slow", {f"week{i}.ipynb": b"{}" for i in range(3)})
    make = config_factory(tmp_path, {"slow": {"source": "gated", "bucket": "slow", "schedule": 0}})
    with RunningServer(make) as server:
        session = requests.Session()
        token = xsrf(session, server.url + "/courses/slow")
        answer = session.post(server.url + "/courses/slow/refresh", data={"_xsrf": token},
                              headers={"Accept": "application/json"})
        assert answer.status_code == 202
        stream = queue.Queue()
        reader = threading.Thread(target=read_events, args=(session, server.url + "/courses/slow/events", stream))
        reader.start()
        for index in range(3):  # each file shows up on the stream while its download waits
            while (event := stream.get(timeout=30))["phase"] != "downloading":
                assert event["phase"] == "listing"
            assert event == {"phase": "downloading", "done": index, "total": 3, "path": f"week{index}.ipynb"}
            GatedConnector.gate.release()
        rest = []
        while not rest or rest[-1]["phase"] != "finished":
            rest.append(stream.get(timeout=30))
        reader.join(timeout=30)
    assert rest[-1]["ok"] and rest[-1]["added"] == 3 and "3 added" in rest[-1]["message"]
    assert {e["phase"] for e in rest[:-1]} <= {"writing"}


def test_preview_lists_pending_changes_and_commits_nothing(server, source):
    server.post_json("/api/courses/demo/refresh")
    repo = CourseRepo.for_course(server.config, "demo")
    before = repo.head()
    source.write("week2/solutions.ipynb", "{}\n")
    source.delete("week1/intro.ipynb")
    session = requests.Session()
    token = xsrf(session, server.url + "/courses/demo")
    page = session.post(server.url + "/courses/demo/preview", data={"_xsrf": token}).text
    added = re.search(r'<section class="panel preview-added".*?</section>', page, re.S).group(0)
    deleted = re.search(r'<section class="panel preview-deleted".*?</section>', page, re.S).group(0)
    assert "week2/solutions.ipynb" in added and "week1/intro.ipynb" in deleted
    assert "1 to add, 0 to change, 1 to delete" in page
    assert repo.head() == before
    assert len(status.read(server.config, "demo").history) == 1  # a preview is not a sync


def test_link_builder_offers_the_snapshots_files_and_answers_links(server):
    server.post_json("/api/courses/demo/refresh")
    page = requests.get(server.url + "/courses/demo", params={"path": "week1/intro.ipynb", "app": "notebook"}).text
    tree = re.search(r'<ul class="tree">(.*)</ul>', page, re.S).group(1)
    picks = re.findall(r'data-path="([^"]*)"', tree)
    assert "week1/intro.ipynb" in picks and "big.csv" not in picks  # skipped: students do not get it
    shown = re.search(r'id="link" [^>]*value="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(shown).query)["urlpath"] == ["tree/demo/week1/intro.ipynb"]
    door = re.search(r'id="door-link" [^>]*value="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert door == f"{server.url}/open/demo/week1/intro.ipynb?app=notebook"  # offered first
    assert page.index('id="door-link"') < page.index('id="link"')
    markdown = re.search(r'id="link-markdown" [^>]*value="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert markdown == f"[intro.ipynb (demo)]({door})"  # what instructors paste goes through the door
    assert re.search(r'id="try-link" [^>]*href="([^"]+)"', page).group(1).replace("&amp;", "&") == shown

    answer = requests.get(server.url + "/courses/demo/link", params={"path": HOSTILE}).json()
    assert answer["door"].startswith(f"{server.url}/open/demo/") and answer["door"] in answer["markdown"]
    query = parse_qs(urlsplit(answer["link"]).query)
    assert query["repo"] == [f"{server.url}/git/demo"] and query["branch"] == ["main"]
    assert unquote(query["urlpath"][0]) == "lab/tree/demo/" + HOSTILE
    assert "&lt;img" in answer["html"] and "<img" not in answer["html"]
    for path, why in (("../etc/passwd", "cannot be in a course"), ("big.csv", "is not in the course")):
        bad = requests.get(server.url + "/courses/demo/link", params={"path": path},
                           headers={"Accept": "application/json"})
        assert bad.status_code == 400 and why in bad.json()["error"]
    rstudio = requests.get(server.url + "/courses/demo/link", params={"app": "rstudio"},
                           headers={"Accept": "application/json"})
    assert rstudio.status_code == 400 and "not one of this hub's apps: lab, notebook" in rstudio.json()["error"]


def test_course_page_shows_what_students_get_with_sizes_and_change_times(make_config, memory_source, monkeypatch):
    from f2git import filetree

    memory_source("lms", {"a/one.txt": b"1" * 1500, "a/two.txt": b"2", "top.txt": b"t"})
    config = make_config({"cs101": {"source": "memory", "bucket": "lms"}})
    course = config.courses["cs101"]
    monkeypatch.setattr("time.time", lambda: 1763663400.0)  # the first snapshot: 20 Nov 2025 18:30
    sync_course(config, course)
    memsource.BUCKETS["lms"].files["a/two.txt"] = b"22"
    monkeypatch.setattr("time.time", lambda: 1763719320.0)  # the second: 21 Nov 10:02
    second = sync_course(config, course)
    repo = CourseRepo.for_course(config, "cs101")
    files = {info.path: info for info in filetree.snapshot_files(repo, second.commit)}
    assert files["a/one.txt"].size == 1500 and files["a/two.txt"].size == 2
    assert files["a/two.txt"].changed > files["a/one.txt"].changed == files["top.txt"].changed
    monkeypatch.setattr(repo, "git", lambda *args, **kw: pytest.fail("read again: not cached"))
    assert filetree.snapshot_files(repo, second.commit)[0].path == "a/one.txt"  # once per snapshot
    root = filetree.tree(list(files.values()))
    assert [f.name for f in root.folders] == ["a"] and root.folders[0].count == 2 and root.count == 3
    assert [f.name for f in root.files] == ["top.txt"]


def test_unknown_course_is_a_404_page(server):
    page = requests.get(server.url + "/courses/nope")
    assert page.status_code == 404 and "no course named &#x27;nope&#x27;" in page.text


def test_token_auth_guards_every_page(tmp_path, source, monkeypatch):
    monkeypatch.setenv("F2GIT_TEST_TOKENS", "dash-Secret-Token-77")

    def make(port):
        return parse({"server": {"data_dir": str(tmp_path / "data"), "port": port, "auth": "token",
                                 "tokens_env": "F2GIT_TEST_TOKENS"},
                      "courses": {"demo": {"source": "local", "path": str(source.path), "schedule": 0}}},
                     tmp_path / "f2git.toml", {"F2GIT_TEST_TOKENS": "dash-Secret-Token-77"})
    with RunningServer(make) as server:
        for path in ("/", "/courses/demo", "/courses/demo/link", "/courses/demo/events"):
            assert requests.get(server.url + path).status_code == 401, path
        assert requests.post(server.url + "/courses/demo/refresh").status_code == 401
        page = requests.get(server.url + "/", headers={"Authorization": "Bearer dash-Secret-Token-77"})
        assert page.status_code == 200 and "dash-Secret-Token-77" not in page.text


def test_a_refused_mass_delete_can_be_confirmed_from_the_course_page(tmp_path):
    source = SourceFolder(tmp_path / "source")
    for index in range(6):
        source.write(f"week{index}.ipynb", "{}\n")
    make = config_factory(tmp_path, {"demo": {"source": "local", "path": str(source.path), "schedule": 0}})
    with RunningServer(make) as server:
        server.post_json("/api/courses/demo/refresh")
        for index in range(6):
            source.delete(f"week{index}.ipynb")
        source.write("README.md", "moved to another course\n")
        status_code, refused = server.post_json("/api/courses/demo/refresh")
        assert not refused["ok"] and "would delete 6 of 6 files" in refused["error"]
        session = requests.Session()
        page = session.get(server.url + "/courses/demo").text
        assert "was stopped because it would delete most files" in page
        assert 'name="allow_mass_delete" value="yes"' in page
        token = xsrf(session, server.url + "/courses/demo")
        answer = session.post(server.url + "/courses/demo/refresh", data={"_xsrf": token, "allow_mass_delete": "yes"},
                              headers={"Accept": "application/json"})
        assert answer.status_code == 202
        finished = events(session, server.url + "/courses/demo/events")[-1]
        assert finished["ok"] and finished["deleted"] == 6 and finished["added"] == 1
        repo = CourseRepo.for_course(server.config, "demo")
        assert set(repo.files(repo.head())) == {"README.md"}
        assert 'name="allow_mass_delete"' not in session.get(server.url + "/courses/demo").text


def test_history_collapses_repeated_failures_and_reaches_back_through_the_repo_log(make_config, memory_source,
                                                                                    monkeypatch):
    bucket = memory_source("lms", {"a.txt": b"1"})
    config = make_config({"cs101": {"source": "memory", "bucket": "lms"}})
    course = config.courses["cs101"]
    monkeypatch.setattr(status, "HISTORY", 4)  # the status keeps only the last 4 syncs
    first = sync_course(config, course)
    bucket.files["a.txt"] = b"2"
    second = sync_course(config, course)
    bucket.files["b.txt"] = b"3"
    third = sync_course(config, course)
    bucket.fail_listing = "memory: 503 from lms.example.edu"
    for _ in range(3):
        sync_course(config, course)
    record = status.read(config, "cs101")
    repo = CourseRepo.for_course(config, "cs101")
    items = history(record, repo.log())
    failure, *snapshots = items
    assert failure.error == "memory: 503 from lms.example.edu" and failure.repeats == 3
    assert [item.commit for item in snapshots] == [third.commit, second.commit, first.commit]
    assert snapshots[0].counts == {"added": 1, "modified": 0, "deleted": 0}  # from the status
    assert snapshots[1].counts is None and snapshots[1].summary == "Update 1 file from memory"  # from git


@pytest.mark.slow
def test_behind_jupyterhub_instructors_log_in_with_the_hubs_oauth_and_students_are_refused(tmp_path, source):
    from f2git.config import load
    from f2git.hubconfig import render
    from tests.hubhelpers import CHP, Hub, free_port
    from tests.hubhelpers import browser_login

    assert CHP.exists(), f"configurable-http-proxy is missing at {CHP}: run `make test-deps`"
    port = free_port()
    config_path = tmp_path / "f2git.toml"
    config_path.write_text(f'[server]\nport = {port}\ndata_dir = "{tmp_path / "data"}"\nauth = "jupyterhub"\n'
                           f'[hub]\ninstructors_group = "teachers"\n'
                           f'[courses.cs101]\nsource = "local"\npath = "{source.path}"\nschedule = 0\n')
    groups = {"teachers": {"users": ["tina"]}, "students": {"users": ["ana"]}}
    with Hub(tmp_path / "hub", render(load(config_path)), groups=groups) as hub:
        hub.wait_for_url(f"http://127.0.0.1:{port}/healthz", "the f2git service")
        dashboard = f"{hub.url}/services/f2git/"
        teacher = browser_login(hub, "tina")
        page = teacher.get(dashboard, timeout=60)  # → the hub's OAuth → back to the dashboard
        assert page.status_code == 200 and page.url == dashboard, page.text[:500]
        assert 'data-course="cs101"' in page.text and "Signed in as tina" in page.text
        course = teacher.get(dashboard + "courses/cs101", timeout=30)
        assert course.status_code == 200 and "Refresh now" in course.text
        student = browser_login(hub, "ana")
        refused = student.get(dashboard, timeout=60)
        assert refused.status_code == 403 and "ana may not manage any course here." in refused.text


class UnlockingConnector(memsource.MemoryConnector):
    """A memory source with one more file unlocking on 1 Dec 10:00 UTC."""

    def list(self, state):
        listing = super().list(state)
        listing.next_release = datetime(2030, 12, 1, 10, 0, tzinfo=timezone.utc)
        return listing


def test_course_page_names_the_next_release_and_plans_a_refresh_for_it(tmp_path, memory_source, monkeypatch):
    monkeypatch.setitem(connectors.SOURCES, "unlocking", "tests.test_dashboard:UnlockingConnector")
    memory_source("lms", {"week1.ipynb": b"{}"})
    make = config_factory(tmp_path, {"cs101": {"source": "unlocking", "bucket": "lms", "schedule": 0}})
    with RunningServer(make) as server:
        server.post_json("/api/courses/cs101/refresh")
        page = requests.get(server.url + "/courses/cs101").text
    facts = re.search(r'<dl class="facts"[^>]*>.*?</dl>', page, re.S).group(0)
    release = '<time datetime="2030-12-01T10:00:00+00:00">1 Dec 10:00 UTC</time>'
    assert f"<dt>Next release in the source</dt><dd>{release}" in facts
    assert re.search(r'<dt>Next scheduled refresh</dt><dd><time datetime="2030-12-01T10:00:02\+00:00">', facts)


def test_only_a_refused_mass_delete_offers_to_confirm_deletions(make_config):
    from f2git.server.dashboard import mass_delete_refused

    config = make_config({"cs101": {"source": "local", "path": "/tmp"}})
    status.record(config, SyncResult("cs101", ok=False, error="local folder: 'would delete.txt' vanished"), started=1.0)
    assert not mass_delete_refused(status.read(config, "cs101"))  # the words alone mean nothing
    status.record(config, SyncResult("cs101", ok=False, error="refused", mass_delete_refused=8), started=2.0)
    assert mass_delete_refused(status.read(config, "cs101"))
    status.record(config, SyncResult("cs101", ok=True), started=3.0)
    assert not mass_delete_refused(status.read(config, "cs101"))
