"""Retract: a file released by mistake leaves the served history for good, and every student's
next click still works. Everything is real: the `local` source, a running f2git server, git
smart HTTP (protocol v0 and v2), unmodified nbgitpuller, and pullhook as git runs it."""
from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from f2git.config import parse
from f2git.store import CourseRepo
from f2git.syncstate import StateStore
from tests.pagehelpers import xsrf
from tests.repohelpers import SourceFolder, Student, git, isolated_git
from tests.serverhelpers import RunningServer, serve_local, settled, wait_until

COURSE = "cs101"
SECRET = "EXAM-SOLUTIONS-7f3a9c: the answer is 42"
LEAK = "solutions/exam.ipynb"
TOKEN = "stud-tok-Rt5-distinctive"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    isolated_git(monkeypatch)
    # git finds pullhook's git-remote-f2git on PATH, as in the single-user image
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def instructor(tmp_path):
    folder = SourceFolder(tmp_path / "released")
    folder.write("README.md", "# CS 101\n")
    folder.write("week1/exercise.ipynb", "".join(f"line {n}\n" for n in range(30)))
    return folder


def local_course(instructor) -> dict:
    return {COURSE: {"source": "local", "path": str(instructor.path), "schedule": 0}}


def serve(tmp_path, instructor, **server):
    return serve_local(tmp_path, instructor.path, COURSE, **server)


def retract(server, *paths: str, reason: str = "released too early") -> dict:
    status, answer = server.post_json(f"/api/courses/{COURSE}/retract", {"paths": list(paths), "reason": reason})
    assert status == 200, answer
    settled(server)  # the answers of the new main, built ahead, are done (see the report: a stop meanwhile)
    return answer


def head(server) -> str:
    return CourseRepo.for_course(server.config, COURSE).head()


def objects_of(repo: Path) -> set[str]:
    out = git("rev-list", "--objects", "--all", cwd=repo).stdout.decode()
    return {line.split()[0] for line in out.splitlines()}


def assert_gone(server, tmp_path: Path, old_ids: list[str], name: str) -> None:
    """No client gets the retracted bytes: full or shallow clone, --unshallow, or by id (v0, v2)."""
    url = server.git_url(COURSE)
    for version in (0, 2):
        v = ["-c", f"protocol.version={version}"]
        full = tmp_path / f"{name}-full-v{version}"
        git(*v, "clone", "-q", url, full)
        shallow = tmp_path / f"{name}-shallow-v{version}"
        git(*v, "clone", "-q", "--depth", "1", url, shallow)
        git(*v, "fetch", "-q", "--unshallow", cwd=shallow)
        for clone in (full, shallow):
            assert SECRET not in git("log", "--all", "-p", cwd=clone).stdout.decode()
            assert not objects_of(clone) & set(old_ids)
        for old in old_ids:
            fetched = git(*v, "fetch", "-q", "origin", old, cwd=full, check=False)
            assert fetched.returncode != 0, f"{old} was served over protocol v{version}"
    repo = CourseRepo.for_course(server.config, COURSE)
    for old in old_ids:
        assert git("--git-dir", repo.path, "cat-file", "-e", old, check=False).returncode != 0
    stored = server.config.server.data_dir / "packcache" / COURSE
    assert {p.name for p in stored.iterdir()} <= {repo.head()} if stored.is_dir() else True


def test_a_retracted_file_is_gone_for_every_way_a_client_asks_also_after_a_restart(tmp_path, instructor):
    url_clones = tmp_path / "clones"
    with serve(tmp_path, instructor) as server:
        url = server.git_url(COURSE)
        git("clone", "-q", "--depth", "1", url, url_clones / "first")
        before = head(server)
        instructor.write(LEAK, SECRET + "\n")
        for version in (0, 2):  # the pack cache holds answers of the leaked snapshot
            git("-c", f"protocol.version={version}", "clone", "-q", "--depth", "1", url, url_clones / f"warm{version}")
        leaked = head(server)
        repo = CourseRepo.for_course(server.config, COURSE)
        blob = repo.files(leaked)[LEAK]
        tree = git("--git-dir", repo.path, "rev-parse", f"{leaked}:solutions").stdout.decode().strip()
        instructor.write("week2/loops.ipynb", "{}\n")
        git("clone", "-q", url, url_clones / "warm-full")
        later = head(server)

        answer = retract(server, LEAK)

        assert answer["paths"] == [LEAK] and answer["rewritten"] == 2 and answer["first"] == leaked
        assert answer["held"] == [LEAK] and not answer["root_rewritten"]
        # the snapshot before the leak keeps its id: students' clones still share it
        assert git("--git-dir", repo.path, "rev-parse", f"{head(server)}~2").stdout.decode().strip() == before
        assert set(repo.files(head(server))) == {"README.md", "week1/exercise.ipynb", "week2/loops.ipynb"}
        assert_gone(server, tmp_path, [leaked, later, blob, tree], "live")
    with serve(tmp_path, instructor) as server:  # a restart: the stored answers of the old history stay gone
        assert_gone(server, tmp_path, [leaked, later, blob, tree], "restarted")


def test_the_retract_is_recorded_without_the_content_and_the_source_is_held_back(tmp_path, instructor):
    with serve(tmp_path, instructor) as server:
        git("clone", "-q", "--depth", "1", server.git_url(COURSE), tmp_path / "c0")
        instructor.write(LEAK, SECRET + "\n")
        git("clone", "-q", "--depth", "1", server.git_url(COURSE), tmp_path / "c1")
        answer = retract(server, LEAK, reason="exam is next week")
        record = server.get_json(f"/api/courses/{COURSE}")
        event = record["history"][0]
        assert event["kind"] == "retract" and event["retracted"] == [LEAK] and event["reason"] == "exam is next week"
        assert event["rewritten"] == 1 and event["who"] and event["commit"] == answer["commit"]
        assert record["commit"] == answer["commit"]
        assert SECRET not in str(record)
        # every commit the history names still exists
        repo = CourseRepo.for_course(server.config, COURSE)
        for item in record["history"]:
            if item.get("commit"):
                assert git("--git-dir", repo.path, "cat-file", "-e", item["commit"], check=False).returncode == 0

        # the source still offers the same file: the next click does not publish it again
        status, synced = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert status == 200 and synced["held"] == [LEAK] and not synced["changed"]
        assert LEAK not in repo.files(repo.head())
        # the instructor releases it again: the next sync publishes it
        status, again = server.post_json(f"/api/courses/{COURSE}/release-again", {"paths": [LEAK]})
        assert status == 200 and again["released"] == [LEAK] and again["sync"]["added"] == 1
        assert LEAK in repo.files(repo.head())


def test_a_new_version_of_a_retracted_file_is_published(tmp_path, instructor):
    with serve(tmp_path, instructor) as server:
        git("clone", "-q", "--depth", "1", server.git_url(COURSE), tmp_path / "c0")
        instructor.write(LEAK, SECRET + "\n")
        server.post_json(f"/api/courses/{COURSE}/refresh")
        retract(server, LEAK)
        instructor.write(LEAK, "the exercise, without its solution\n")
        status, synced = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert status == 200 and synced["added"] == 1 and "held" not in synced
        repo = CourseRepo.for_course(server.config, COURSE)
        assert git("--git-dir", repo.path, "show", f"main:{LEAK}").stdout.decode() == "the exercise, without its solution\n"
        assert StateStore.for_course(server.config, COURSE).held() == {}


# -- every student's next click ---------------------------------------------------------

def edit(student: Student) -> str:
    """The student's own work: a changed exercise and a new file."""
    mine = student.read("week1/exercise.ipynb").replace("line 3\n", "line 3: my answer\n")
    student.write("week1/exercise.ipynb", mine)
    student.write("my-notes.md", f"notes of {student.path.parent.name}\n")
    return mine


def assert_updated(student: Student, mine: str) -> None:
    assert student.read("week1/exercise.ipynb") == mine
    assert student.read("my-notes.md") == f"notes of {student.path.parent.name}\n"
    assert student.read("week2/loops.ipynb") == "{}\n"  # released after the leak: arrives
    assert git("fsck", "--no-progress", cwd=student.path).returncode == 0
    assert git("gc", "-q", cwd=student.path).returncode == 0  # nothing left half-linked


def leak_and_retract(server, instructor, students_before, students_after, tmp_path):
    instructor.write(LEAK, SECRET + "\n")
    for student in students_after:
        student.click()
    instructor.write("week2/loops.ipynb", "{}\n")
    return retract(server, LEAK)


def test_students_who_cloned_before_the_leak_or_have_full_history_just_click(tmp_path, instructor):
    with serve(tmp_path, instructor) as server:
        url = server.git_url(COURSE)
        early = Student(url, tmp_path / "early" / COURSE)
        full = Student(url, tmp_path / "full" / COURSE, depth=0)
        for student in (early, full):
            student.click()
        mine = {student: edit(student) for student in (early, full)}
        instructor.write(LEAK, SECRET + "\n")
        full.click()  # full history, and the leaked file, fetched before the retract
        assert full.read(LEAK) == SECRET + "\n"
        instructor.write("week2/loops.ipynb", "{}\n")
        retract(server, LEAK)
        for student in (early, full):
            student.click()
            assert_updated(student, mine[student])
        assert not early.exists(LEAK)
        assert full.read(LEAK) == SECRET + "\n"  # fetched before: a retract cannot take a copy back


def test_a_late_joiner_without_pullhook_gets_backup_and_resync(tmp_path, instructor):
    with serve(tmp_path, instructor) as server:
        url = server.git_url(COURSE)
        Student(url, tmp_path / "first" / COURSE).click()
        instructor.write(LEAK, SECRET + "\n")
        late = Student(url, tmp_path / "late" / COURSE)
        late.click()  # the first click after the leak: its shallow clone starts at the leaked snapshot
        mine = edit(late)
        instructor.write("week2/loops.ipynb", "{}\n")
        retract(server, LEAK)
        with pytest.raises(Exception) as failed:
            late.click()
        # nbgitpuller's merge error: its page offers "Backup and resync"; its log says why
        assert failed.value.cmd[5] == "merge"
        told = [line for line in late.log if "remote: f2git:" in line]
        assert len(told) == 1 and "took back files" in told[0] and "Backup and resync" in told[0], late.log
        # the front door says it too, and its "Fresh copy" is nbgitpuller's backup-and-resync link
        door = requests.get(f"{server.url}/open/{COURSE}", allow_redirects=False, timeout=30)
        assert door.status_code == 200 and "took back files" in door.text
        fresh = html.unescape(re.search(r'id="fresh" href="([^"]+)"', door.text).group(1))
        late.click(backup=parse_qs(urlsplit(fresh).query)["backup"][0])  # as nbgitpuller's handler passes it
        backups = [p for p in late.path.parent.iterdir() if p.name.startswith(f"{COURSE}_backup_")]
        assert len(backups) == 1 and (backups[0] / "my-notes.md").read_text() == "notes of late\n"
        assert (backups[0] / "week1" / "exercise.ipynb").read_text() == mine
        assert late.files() == {k: v for k, v in instructor.files().items() if k != LEAK}


# -- pullhook bridges what nbgitpuller alone cannot ----------------------------------------

def serve_with_tokens(tmp_path, instructor, monkeypatch):
    monkeypatch.setenv("F2GIT_TOKENS", TOKEN)  # the student's: fetch only
    monkeypatch.setenv("F2GIT_MANAGERS", "manager-token")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)

    def make(port):
        monkeypatch.setenv("F2GIT_PULLHOOK_TRUSTED", f"http://127.0.0.1:{port}")
        data = {"server": {"data_dir": str(tmp_path / "data"), "port": port, "refresh_ttl": 0, "auth": "token",
                           "tokens_env": "F2GIT_TOKENS", "manage_tokens_env": "F2GIT_MANAGERS", "click_window": 0},
                "courses": local_course(instructor)}
        return parse(data, tmp_path / "f2git.toml", os.environ)
    return RunningServer(make)


def retract_as(server, token: str, *paths: str, headers: dict | None = None) -> tuple[int, bytes]:
    status, _, body = server.request("POST", f"/api/courses/{COURSE}/retract", json.dumps({"paths": list(paths)}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"token {token}",
                                              **(headers or {})})
    settled(server)
    return status, body


def test_a_late_joiner_with_pullhook_clicks_on_with_edits_kept(tmp_path, instructor, monkeypatch):
    with serve_with_tokens(tmp_path, instructor, monkeypatch) as server:
        url = f"f2git::{server.git_url(COURSE)}"
        early = Student(url, tmp_path / "early" / COURSE)
        early.click()
        mine_early = edit(early)
        instructor.write(LEAK, SECRET + "\n")
        late = Student(url, tmp_path / "late" / COURSE)
        late.click()
        assert late.is_shallow()
        mine = edit(late)
        late.click()  # a click with edits before the retract: the late joiner has a commit of their own
        instructor.write("week2/loops.ipynb", "{}\n")
        status, body = retract_as(server, "manager-token", LEAK)
        assert status == 200, body
        late.click()
        assert_updated(late, mine)
        assert any("your copy was linked to the corrected history" in line for line in late.log)
        assert not any("Backup and resync" in line for line in late.log)  # pullhook bridged it: no need
        assert late.read(LEAK) == SECRET + "\n"  # their copy stays theirs, untracked now
        early.click()
        assert_updated(early, mine_early)
        # and the next snapshots merge as usual
        instructor.write("week3/more.ipynb", "{}\n")
        late.click()
        assert late.read("week3/more.ipynb") == "{}\n" and late.read("week1/exercise.ipynb") == mine


def test_a_late_joiner_whose_first_click_is_the_leaked_snapshot_with_pullhook(tmp_path, instructor, monkeypatch):
    with serve_with_tokens(tmp_path, instructor, monkeypatch) as server:
        url = f"f2git::{server.git_url(COURSE)}"
        Student(url, tmp_path / "first" / COURSE).click()
        instructor.write(LEAK, SECRET + "\n")
        late = Student(url, tmp_path / "late" / COURSE)
        late.click()  # no edits, no commit of their own: the branch is the leaked snapshot itself
        instructor.write("week2/loops.ipynb", "{}\n")
        assert retract_as(server, "manager-token", LEAK)[0] == 200
        late.click()
        assert late.read("week2/loops.ipynb") == "{}\n"
        assert git("fsck", "--no-progress", cwd=late.path).returncode == 0


def test_a_leak_in_the_root_commit_of_an_older_repo_with_pullhook(tmp_path, instructor, monkeypatch):
    """Repos made before f2git started each course with an empty commit: their first snapshot
    is the root every student shares. pullhook bridges it for every kind of clone."""
    instructor.write(LEAK, SECRET + "\n")
    monkeypatch.setattr(CourseRepo, "empty_root", lambda self: None)  # as older f2git wrote it
    with serve_with_tokens(tmp_path, instructor, monkeypatch) as server:
        url = f"f2git::{server.git_url(COURSE)}"
        shallow, full = Student(url, tmp_path / "shallow" / COURSE), Student(url, tmp_path / "full" / COURSE, depth=0)
        for student in (shallow, full):
            student.click()
        repo = CourseRepo.for_course(server.config, COURSE)
        assert git("--git-dir", repo.path, "rev-list", "--count", "main").stdout.strip() == b"1"
        mine = {student: edit(student) for student in (shallow, full)}
        instructor.write("week2/loops.ipynb", "{}\n")
        status, body = retract_as(server, "manager-token", LEAK)
        assert status == 200 and b'"root_rewritten": true' in body
        for student in (shallow, full):
            try:
                student.click()
            except Exception:
                raise AssertionError("".join(student.log)) from None
            assert_updated(student, mine[student])


# -- who may retract, and what -------------------------------------------------------------

def test_students_cross_site_posts_and_paths_outside_the_course_are_refused(tmp_path, instructor, monkeypatch):
    with serve_with_tokens(tmp_path, instructor, monkeypatch) as server:
        Student(f"f2git::{server.git_url(COURSE)}", tmp_path / "s" / COURSE).click()
        status, body = retract_as(server, TOKEN, "README.md")  # a student's (fetch) token
        assert status == 403 and b"may not manage" in body
        for action, data in (("rollback", {"commit": head(server)}), ("resume", {}), ("release-again", {"paths": ["x"]}),
                             ("pin", {"name": "x"})):
            status, _, body = server.request("POST", f"/api/courses/{COURSE}/{action}", json.dumps(data).encode(),
                                             headers={"Content-Type": "application/json", "Authorization": f"token {TOKEN}"})
            assert status == 403 and b"may not manage" in body, action
        before = head(server)
        status, body = retract_as(server, "no-such-token", "README.md")
        assert status == 401
        status, body = retract_as(server, "manager-token", "README.md", headers={"Origin": "https://evil.example"})
        assert status == 403 and b"cross-site" in body
        for path in ("../etc/passwd", "/etc/passwd", ".git/config", "a/../../b"):
            status, body = retract_as(server, "manager-token", path)
            assert status == 400 and b"not a path inside the course" in body, (path, body)
        status, body = retract_as(server, "manager-token", "never-released.txt")
        assert status == 404 and b"no snapshot holds never-released.txt" in body
        assert head(server) == before  # nothing of it changed anything


def test_the_dashboard_retracts_after_a_confirmation_and_shows_what_is_held(tmp_path, instructor):
    with serve(tmp_path, instructor) as server:
        git("clone", "-q", "--depth", "1", server.git_url(COURSE), tmp_path / "c0")
        instructor.write(LEAK, SECRET + "\n")
        server.post_json(f"/api/courses/{COURSE}/refresh")
        session = requests.Session()
        page = server.url + f"/courses/{COURSE}"
        assert "cannot</strong> take back copies students already" in session.get(page).text
        no_xsrf = session.post(page + "/retract", data={"paths": LEAK, "confirm": "yes"}, allow_redirects=False)
        assert no_xsrf.status_code == 403 and LEAK in CourseRepo.for_course(server.config, COURSE).files(head(server))
        token = xsrf(session, page)
        unconfirmed = session.post(page + "/retract", data={"_xsrf": token, "paths": LEAK}, allow_redirects=False)
        assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.text
        done = session.post(page + "/retract", data={"_xsrf": token, "paths": LEAK + "\n", "confirm": "yes",
                                                      "reason": "too early"}, allow_redirects=False)
        assert done.status_code == 303
        settled(server)
        assert LEAK not in CourseRepo.for_course(server.config, COURSE).files(head(server))
        shown = session.get(page).text
        assert "<strong>Retracted</strong>" in shown and "too early" in shown and "Held back" in shown
        assert SECRET not in shown
        again = session.post(page + "/release-again", data={"_xsrf": token, "path": LEAK}, allow_redirects=False)
        assert again.status_code == 303
        assert wait_until(lambda: LEAK in CourseRepo.for_course(server.config, COURSE).files(head(server)))
