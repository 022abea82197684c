"""The front door (`/open/<course>[/<path>]?app=…`) through a running f2git server: every page a
student can get, in English and German, the 303 to the hub when all is well, the counts that
keep no names, and `f2git link --door`."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import string
import subprocess
import sys
import time
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from f2git import holds, release
from f2git.links import course_link
from f2git.opens import OpenCounts
from f2git.server import handoff, rewritenotice
from f2git.server.auth import Auth, Identity, request_token
from f2git.store import CourseRepo
from f2git import words as catalogue
from f2git.words import WORDS, language
from tests.hubhelpers import hub_oauth_in_process
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer, config_factory

DE = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}


class RosterAuth(Auth):
    """A policy as a roster gives it: `Authorization: token <name>` names the student; only
    `members` may fetch; `tina` manages."""

    def __init__(self, members: set[str]):
        self.members = members

    async def identify(self, handler):
        name = request_token(handler)
        return Identity(name, kind="user") if name else None

    def may_fetch(self, identity, course):
        return identity.name in self.members

    def may_manage(self, identity, course):
        return identity.name == "tina"


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "cs101-files")
    folder.write("README.md", "# CS 101\n")
    folder.write("week 1/intro.ipynb", "{}\n")
    return folder


def courses(tmp_path: Path, source: SourceFolder) -> dict:
    return {"cs101": {"source": "local", "path": str(source.path), "schedule": 0},
            "secret-seminar": {"source": "local", "path": str(source.path), "schedule": 0},
            "never": {"source": "local", "path": str(tmp_path / "missing"), "schedule": 0}}


@pytest.fixture
def server(tmp_path, source):
    with RunningServer(config_factory(tmp_path, courses(tmp_path, source), refresh_ttl=0)) as running:
        assert running.post_json("/api/courses/cs101/refresh")[1]["ok"]
        yield running


@pytest.fixture
def roster_server(tmp_path, source):
    make = config_factory(tmp_path, courses(tmp_path, source), refresh_ttl=0)
    with RunningServer(make, auth=RosterAuth({"ana", "bob", "tina"})) as running:
        status, _, _ = running.request("POST", "/api/courses/cs101/refresh", headers={"Authorization": "token tina"})
        assert status == 200
        yield running


def served(server: RunningServer) -> list[str]:
    repo = CourseRepo.for_course(server.config, "cs101")
    return repo.files(repo.head())


def page(server: RunningServer, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
    """(status, headers, text) of a GET, redirects not followed (the 303 is the answer)."""
    answer = requests.get(server.url + path, headers=headers, allow_redirects=False, timeout=60)
    return answer.status_code, answer.headers, answer.text


def text_of(html: str) -> str:
    """The page's words, tags dropped and entities of quotes undone (as a reader sees them)."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def assert_student_page(headers, html: str, lang: str) -> None:
    assert headers["Content-Type"].startswith("text/html")
    assert f'<html lang="{lang}">' in html
    assert headers["Content-Language"] == lang and "Accept-Language" in headers["Vary"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"


# -- the way through -----------------------------------------------------------------------------

def test_the_door_refreshes_like_a_click_and_sends_the_student_to_nbgitpuller(server, source):
    source.write("week 2/loops.ipynb", "{}\n")  # released since the first snapshot
    status, headers, _ = page(server, "/open/cs101/week%202/loops.ipynb?app=notebook")
    assert status == 303
    assert headers["Location"] == course_link(server.config, "cs101", "week 2/loops.ipynb", app="notebook")
    query = parse_qs(urlsplit(headers["Location"]).query)
    assert query["repo"] == [f"{server.url}/git/cs101"] and query["urlpath"] == ["tree/cs101/week%202/loops.ipynb"]
    assert "week 2/loops.ipynb" in served(server)  # refreshed before the 303: the file is there to open

    status, headers, _ = page(server, "/open/cs101")  # the course folder, in the hub's first app
    assert status == 303 and headers["Location"] == course_link(server.config, "cs101", None, app="lab")


def test_plain_nbgitpuller_links_keep_working_beside_the_door(server):
    status, _, body = server.request("GET", "/git/cs101/info/refs?service=git-upload-pack")
    assert status == 200 and b"refs/heads/main" in body


# -- the pages -----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_a_renamed_course_gets_a_page_that_says_so_and_lists_no_courses(server, headers, lang):
    status, answer, html = page(server, "/open/cs-101-old/week1/intro.ipynb", headers)
    assert status == 404
    assert_student_page(answer, html, lang)
    words = text_of(html)
    assert WORDS["missing.title"][lang] in words
    assert ("renamed" if lang == "en" else "umbenannt") in words and "cs-101-old" in words
    assert "secret-seminar" not in html and "cs101" not in html.replace("cs-101-old", "")


@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_a_student_not_in_the_course_reads_why_and_is_not_sent_on(roster_server, headers, lang):
    status, answer, html = page(roster_server, "/open/cs101", {"Authorization": "token mallory", **headers})
    assert status == 403 and "Location" not in answer
    assert_student_page(answer, html, lang)
    words = text_of(html)
    assert WORDS["refused.title"][lang] in words
    assert "you (mallory) are not in course 'cs101'" in words  # the reason the admission gave
    assert ("instructor" if lang == "en" else "Lehrperson") in words
    status, answer, _ = page(roster_server, "/open/cs101", {"Authorization": "token ana"})
    assert status == 303 and "/hub/user-redirect/git-pull?" in answer["Location"]


@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_while_the_source_fails_the_student_reads_the_snapshot_date_and_can_continue(server, source, headers, lang):
    made = server.get_json("/api/courses/cs101")["last_change"]
    shutil.rmtree(source.path)  # the instructor's source is gone
    status, answer, html = page(server, "/open/cs101/README.md", headers)
    assert status == 200
    assert_student_page(answer, html, lang)
    words = text_of(html)
    assert WORDS["failing.title"][lang] in words
    day = time.gmtime(made)
    assert f"{day.tm_year}" in words and f"{time.strftime('%H:%M', day)} UTC" in words
    assert (time.strftime("%B", day) if lang == "en" else "Dezember" if day.tm_mon == 12 else "") in words
    link = re.search(r'id="continue" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link == course_link(server.config, "cs101", "README.md")  # Continue reaches the hub
    assert WORDS["continue"][lang] in words
    assert str(source.path) not in html  # the source's error is for the instructor, not here


@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_a_course_held_by_the_instructor_says_so_and_offers_its_snapshot(server, source, headers, lang):
    holds.hold(server.config, "cs101", {"reason": "exam week: solutions withdrawn"})
    source.write("solutions.ipynb", "{}\n")  # a hold means no sync publishes this
    status, answer, html = page(server, "/open/cs101", headers)
    assert status == 200
    assert_student_page(answer, html, lang)
    words = text_of(html)
    assert WORDS["held.title"][lang] in words and "exam week: solutions withdrawn" in words
    assert re.search(r'id="continue" href="[^"]+git-pull\?repo=', html)
    assert "solutions.ipynb" not in served(server)  # the door did not refresh a held course


@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_when_every_git_backend_is_busy_the_door_says_so_with_retry_after(tmp_path, source, headers, lang):
    make = config_factory(tmp_path, courses(tmp_path, source), max_git_processes=1)
    with RunningServer(make) as server:
        assert server.post_json("/api/courses/cs101/refresh")[1]["ok"]
        backends = server.server.backends
        release = asyncio.Event()

        async def clone() -> None:  # holds a slot as a running clone does, or queues for one
            async with backends.slot():
                await release.wait()

        server.call(lambda: [asyncio.ensure_future(clone()) for _ in range(2)])
        assert server.call(backends.overloaded)
        status, answer, html = page(server, "/open/cs101", headers)
        assert status == 503 and answer["Retry-After"] == "60"
        assert_student_page(answer, html, lang)
        assert WORDS["busy.title"][lang] in text_of(html)
        server.call(release.set)
        time.sleep(0.2)
        assert not server.call(backends.overloaded)
        assert page(server, "/open/cs101")[0] == 303


def test_a_long_made_up_course_name_is_not_repeated_whole(server):
    status, _, html = page(server, "/open/" + "please-send-your-password-to-evil.example-" * 5)
    assert status == 404 and "please-send-your-password-to-evil.example-" * 2 not in html


def test_when_the_hub_does_not_answer_the_door_says_so_with_retry_after(tmp_path, source, monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{closed.getsockname()[1]}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token")
    with hub_oauth_in_process(), closed, \
            RunningServer(config_factory(tmp_path, courses(tmp_path, source), auth="jupyterhub")) as server:
        for headers, lang in ((EN, "en"), (DE, "de")):
            status, answer, html = page(server, "/open/cs101", {"Authorization": "token student-token", **headers})
            assert status == 503 and answer["Retry-After"] == "60"
            assert_student_page(answer, html, lang)
            assert WORDS["hub_busy.title"][lang] in text_of(html)
        # a browser without the hub's cookie is sent to sign in at the hub, then back here
        status, answer, _ = page(server, "/open/cs101/README.md?app=lab")
        assert status == 302 and "/hub/api/oauth2/authorize?" in answer["Location"]


def test_a_course_that_never_had_files_says_so(server):
    status, answer, html = page(server, "/open/never", DE)
    assert status == 503 and answer["Retry-After"]
    assert WORDS["empty.title"]["de"] in text_of(html)


def test_an_unsafe_path_or_an_unknown_app_is_a_broken_link_page(server):
    status, _, html = page(server, "/open/cs101/..%2F..%2Fetc/passwd")
    assert status == 400 and WORDS["badlink.title"]["en"] in text_of(html)
    status, _, html = page(server, "/open/cs101?app=rstudio")  # not one of this hub's apps
    assert status == 400 and "rstudio" in text_of(html)


def test_without_a_sign_in_page_a_stranger_reads_that_they_must_sign_in(roster_server):
    status, answer, html = page(roster_server, "/open/cs101", DE)
    assert status == 401 and WORDS["login.title"]["de"] in text_of(html)


def test_the_door_answers_under_the_hub_service_prefix(tmp_path, source, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/f2git/")
    with RunningServer(config_factory(tmp_path, courses(tmp_path, source))) as server:
        assert server.post_json("/api/courses/cs101/refresh")[1]["ok"]
        status, answer, _ = page(server, "/services/f2git/open/cs101/README.md")
        assert status == 303 and "git-pull?repo=" in answer["Location"]
        status, _, html = page(server, "/services/f2git/open/old-name")
        assert status == 404 and 'href="/services/f2git/static/dashboard.css"' in html
        assert server.request("GET", "/services/f2git/static/dashboard.css")[0] == 200


# -- after a retract (students without pullhook: the door cannot see whose copy is stranded) ----

def retract(server: RunningServer, path: str) -> dict:
    status, answer = server.post_json("/api/courses/cs101/retract", {"paths": [path]})
    assert status == 200, answer
    return answer


def fresh_and_continue(html: str) -> tuple[str, str]:
    found = {name: unescape(href) for name, href in re.findall(r'id="(continue|fresh)" href="([^"]+)"', html)}
    return found["continue"], found["fresh"]


@pytest.mark.parametrize("headers, lang", [(EN, "en"), (DE, "de")])
def test_after_a_retract_each_browser_reads_once_what_it_did_and_can_get_a_fresh_copy(server, source, headers, lang):
    before = CourseRepo.for_course(server.config, "cs101").log(1)[0]["time"]
    time.sleep(1.1)  # the leak's snapshot is newer than the one before it: the page names when it began
    source.write("solutions.ipynb", '{"answer": 42}\n')
    assert server.post_json("/api/courses/cs101/refresh")[1]["changed"]
    leaked = CourseRepo.for_course(server.config, "cs101").log(1)[0]["time"]
    retract(server, "solutions.ipynb")

    status, answer, html = page(server, "/open/cs101/README.md", headers)
    assert status == 200
    assert_student_page(answer, html, lang)
    words = text_of(html)
    assert WORDS["rewritten.title"][lang] in words and WORDS["rewritten.todo"][lang] in words
    since = release.rewrite_info(server.config, "cs101")["since"]
    assert since == leaked > before and catalogue.when(lang, since) in words
    assert "solutions.ipynb" not in html  # the page does not advertise what was taken back
    link = course_link(server.config, "cs101", "README.md")
    go_on, fresh = fresh_and_continue(html)
    assert go_on == link
    assert parse_qs(urlsplit(fresh).query) == {**parse_qs(urlsplit(link).query), "backup": ["true"]}
    cookie = answer["Set-Cookie"]
    assert cookie.startswith("f2git-retract-cs101=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie

    told = {"Cookie": cookie.split(";")[0], **headers}
    status, answer, _ = page(server, "/open/cs101/README.md", told)
    assert status == 303 and answer["Location"] == link  # told once: the next open goes straight on
    assert page(server, "/open/cs101", headers)[0] == 200  # another browser (no cookie) is told too

    source.write("week 2/more.ipynb", "{}\n")
    assert server.post_json("/api/courses/cs101/refresh")[1]["changed"]
    retract(server, "week 2/more.ipynb")  # a second retract: told again, with its own time
    assert page(server, "/open/cs101", told)[0] == 200


def test_a_root_leak_tells_everyone_who_opened_before_the_retract(tmp_path, source, monkeypatch):
    source.write("solutions.ipynb", '{"answer": 42}\n')
    monkeypatch.setattr(CourseRepo, "empty_root", lambda self: None)  # a repo older f2git made
    with RunningServer(config_factory(tmp_path, courses(tmp_path, source), refresh_ttl=0)) as server:
        assert server.post_json("/api/courses/cs101/refresh")[1]["ok"]
        retract(server, "solutions.ipynb")
        status, _, html = page(server, "/open/cs101", DE)
        assert status == 200 and WORDS["rewritten_root.text"]["de"].split("{date}")[0] in text_of(html)


def test_a_retract_record_without_its_start_tells_everyone_who_opened_before_it(server, source):
    source.write("solutions.ipynb", '{"answer": 42}\n')
    assert server.post_json("/api/courses/cs101/refresh")[1]["changed"]
    retract(server, "solutions.ipynb")
    record = release.rewrites_path(server.config, "cs101")
    kept = json.loads(record.read_text())
    del kept["since"]  # as f2git wrote it before it kept when the leak began
    record.write_text(json.dumps(kept))
    status, _, html = page(server, "/open/cs101")
    assert status == 200 and WORDS["rewritten_root.text"]["en"].split("{date}")[0] in text_of(html)


def test_with_pullhook_or_long_after_a_retract_the_door_goes_straight_on(server, source, monkeypatch):
    source.write("solutions.ipynb", '{"answer": 42}\n')
    assert server.post_json("/api/courses/cs101/refresh")[1]["changed"]
    retract(server, "solutions.ipynb")
    monkeypatch.setattr(server.config.hub, "pullhook", True)  # pullhook bridges every copy itself
    assert page(server, "/open/cs101")[0] == 303
    monkeypatch.setattr(server.config.hub, "pullhook", False)
    assert page(server, "/open/cs101")[0] == 200
    later = time.time() + (rewritenotice.DOOR_DAYS + 1) * 86400  # nbgitpuller's log line still says it
    monkeypatch.setattr(handoff.time, "time", lambda: later)
    assert page(server, "/open/cs101")[0] == 303


# -- counts, not names ---------------------------------------------------------------------------

def test_opens_are_counted_per_course_and_file_without_keeping_names(roster_server, tmp_path):
    for student in ("ana", "ana", "bob"):
        assert page(roster_server, "/open/cs101/README.md", {"Authorization": f"token {student}"})[0] == 303
    assert page(roster_server, "/open/cs101", {"Authorization": "token bob"})[0] == 303
    page(roster_server, "/open/cs101", {"Authorization": "token mallory"})  # refused: not an open

    status, _, body = roster_server.request("GET", "/metrics", headers={"Authorization": "token tina"})
    metrics = body.decode()
    assert 'f2git_door_students_this_week{course="cs101"} 2.0' in metrics
    assert 'f2git_door_opens_total{course="cs101"} 4.0' in metrics
    assert 'f2git_door_students_this_week{course="secret-seminar"} 0.0' in metrics

    status, _, body = roster_server.request("GET", "/courses/cs101", headers={"Authorization": "token tina"})
    html = body.decode()
    readme = re.search(r'<li class="file[^"]*" data-path="README.md">.*?</li>', html, re.S).group(0)
    assert "opened by 2 students this week" in readme
    intro = re.search(r'<li class="file[^"]*" data-path="week 1/intro.ipynb">.*?</li>', html, re.S).group(0)
    assert "opened by" not in intro

    # no student's name reaches the metrics, the dashboard or the data directory
    for name in ("ana", "bob", "mallory"):
        assert name not in metrics and f">{name}<" not in html
    for file in (tmp_path / "data").rglob("*"):
        if file.is_file() and "objects" not in file.parts:
            assert b"mallory" not in file.read_bytes() and b"token ana" not in file.read_bytes()


def test_a_new_week_forgets_the_students_and_their_digests():
    now = [time.mktime((2026, 11, 30, 12, 0, 0, 0, 0, 0))]  # a Monday
    counts = OpenCounts(clock=lambda: now[0])
    counts.opened("cs101", "a.ipynb", "user:ana")
    counts.opened("cs101", "/a.ipynb", "user:ana")
    counts.opened("cs101", "a.ipynb", "user:bob")
    assert counts.students("cs101", "a.ipynb") == 2 and counts.students("cs101") == 2
    assert all(b"ana" not in digest for digests in counts._students.values() for digest in digests)
    key = counts._key
    now[0] += 7 * 24 * 3600
    assert counts.students("cs101") == 0 and counts.by_path("cs101") == {}
    counts.opened("cs101", "a.ipynb", "user:ana")
    assert counts._key != key and counts.students("cs101", "a.ipynb") == 1
    assert counts.opens["cs101"] == 4  # all opens are kept: a number, not a person


def test_made_up_paths_cannot_grow_the_counts_without_end(monkeypatch):
    monkeypatch.setattr("f2git.opens.MAX_PATHS", 50)
    counts = OpenCounts()
    for n in range(200):
        counts.opened("cs101", f"invented/{n}.ipynb", "user:mallory")
    counts.opened("cs101", "invented/7.ipynb", "user:ana")  # a counted path still counts
    assert len(counts.by_path("cs101")) == 50 and counts.students("cs101", "invented/7.ipynb") == 2
    assert counts.students("cs101") == 2 and counts.opens["cs101"] == 201


@pytest.mark.parametrize("header, expected", [
    ("de-DE,de;q=0.9,en;q=0.8", "de"), ("en-US,en;q=0.9,de;q=0.8", "en"), ("fr-FR,fr;q=0.9,de;q=0.5", "de"),
    ("fr-FR", "en"), ("", "en"), (None, "en"), ("de;q=0,en;q=0.1", "en"), ("en;q=0.2, de-AT", "de"),
    ("de;q=abc", "en"), ("*", "en")])
def test_the_page_language_follows_the_browsers_ranking(header, expected):
    assert language(header) == expected


def test_every_sentence_is_in_english_and_german():
    assert all(set(entry) == {"en", "de"} and all(entry.values()) for entry in WORDS.values())
    assert sum(key.startswith("lti.") for key in WORDS) > 50  # the LTI pages' sentences are here too


def test_both_languages_of_a_sentence_fill_the_same_fields():
    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    # only English's plural ending {s} may go unused in German
    assert not [key for key, entry in WORDS.items() if fields(entry["en"]) - {"s"} != fields(entry["de"]) - {"s"}]


def test_every_sentence_the_lti_pages_name_is_in_the_catalogue():
    root = Path(catalogue.__file__).parent
    code = "".join(path.read_text() for path in [*(root / "lti").glob("*.py"), root / "server" / "lti.py"])
    named = set(re.findall(r'"(lti\.[a-z_.]+)"', code))  # topics (Refused, say) and shared keys
    assert len(named) > 40
    missing = [key for key in named if key not in WORDS and f"{key}.text" not in WORDS]
    assert not missing


# -- f2git link --door ---------------------------------------------------------------------------

def f2git(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_link_door_prints_the_door_link_and_plain_link_stays_the_nbgitpuller_link(tmp_path, source):
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\npublic_url = "https://files.example.edu"\n'
                      f'[courses.cs101]\nsource = "local"\npath = "{source.path}"\n')
    assert f2git(config, "sync").returncode == 0
    door = f2git(config, "link", "cs101", "--door", "--path", "week 1/intro.ipynb")
    assert door.returncode == 0, door.stderr
    assert door.stdout.strip() == "https://files.example.edu/open/cs101/week%201/intro.ipynb?app=lab"
    plain = f2git(config, "link", "cs101")
    assert "/hub/user-redirect/git-pull?repo=" in plain.stdout
    missing = f2git(config, "link", "cs101", "--door", "--path", "week 9/none.ipynb")
    assert missing.returncode == 2 and "not in the course's current snapshot" in missing.stderr


def test_link_door_of_a_hub_service_goes_through_the_hubs_service_route(tmp_path, source):
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\nauth = "jupyterhub"\npublic_url = "http://f2git:8765"\n'
                      f'service_name = "files"\n[hub]\nurl = "https://hub.example.edu"\n'
                      f'[courses.cs101]\nsource = "local"\npath = "{source.path}"\n')
    door = f2git(config, "link", "cs101", "--door")
    assert door.stdout.strip() == "https://hub.example.edu/services/files/open/cs101?app=lab", door.stderr
