"""Rollback: an earlier snapshot's files come back as a new snapshot (history grows, students'
edits kept through nbgitpuller), and the course holds still until the instructor resumes it."""
from __future__ import annotations

import json

import requests

from f2git.cli import main
from f2git.store import CourseRepo
from tests.pagehelpers import xsrf
from tests.repohelpers import SourceFolder, Student, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import serve_local

COURSE = "cs101"


def test_rollback_publishes_an_earlier_snapshot_and_holds_the_course_until_resumed(tmp_path):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("README.md", "# CS 101\n")
    instructor.write("week1/exercise.ipynb", "version 1\n")
    with serve_local(tmp_path, instructor.path) as server:
        repo = CourseRepo.for_course(server.config, COURSE)
        student = Student(server.git_url(COURSE), tmp_path / "home" / COURSE)
        student.click()
        good = repo.head()
        student.write("notes.md", "mine\n")
        instructor.write("week1/exercise.ipynb", "version 2, broken\n")
        instructor.write("week2/draft.ipynb", "not ready\n")
        student.click()
        bad = repo.head()

        status, answer = server.post_json(f"/api/courses/{COURSE}/rollback", {"commit": good[:10]})

        assert status == 200 and answer["to"] == good and answer["on_hold"], answer
        new = repo.head()
        assert new == answer["commit"] and git("merge-base", "--is-ancestor", bad, new, cwd=repo.path).returncode == 0
        assert repo.files(new) == repo.files(good)  # the files of the good snapshot, as a new one
        student.click()
        assert student.read("week1/exercise.ipynb") == "version 1\n" and not student.exists("week2/draft.ipynb")
        assert student.read("notes.md") == "mine\n"
        # held: the source changed, clicks and refreshes publish nothing
        instructor.write("week3/more.ipynb", "{}\n")
        status, synced = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert status == 200 and synced["on_hold"] and not synced["changed"] and repo.head() == new
        record = server.get_json(f"/api/courses/{COURSE}")
        assert record["on_hold"]["to"] == good and any(e.get("kind") == "rollback" for e in record["history"])
        session = requests.Session()
        page = session.get(server.url + f"/courses/{COURSE}").text
        assert "On hold:" in page and "Resume syncing" in page and "<strong>Rolled back</strong>" in page
        # a commit students are not served is refused, as is a malformed one
        status, refused = server.post_json(f"/api/courses/{COURSE}/rollback", {"commit": "0" * 40})
        assert status == 404 and "not in the history students are served" in refused["error"]
        status, refused = server.post_json(f"/api/courses/{COURSE}/rollback", {"commit": "HEAD~1; rm -rf /"})
        assert status == 400 and "is not a commit id" in refused["error"]
        # resume (the dashboard's button): the source's files are published again
        token = xsrf(session, server.url + f"/courses/{COURSE}")
        resumed = session.post(server.url + f"/courses/{COURSE}/resume", data={"_xsrf": token}, allow_redirects=False)
        assert resumed.status_code == 303
        status, synced = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert status == 200 and synced["changed"] and "on_hold" not in synced
        student.click()
        assert student.read("week1/exercise.ipynb") == "version 2, broken\n" and student.read("week3/more.ipynb") == "{}\n"
        assert student.read("notes.md") == "mine\n"


def test_rollback_and_resume_from_the_command_line(tmp_path, capsys):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("a.txt", "1\n")
    config_file = tmp_path / "f2git.toml"
    config_file.write_text(f'[server]\ndata_dir = "data"\n[courses.{COURSE}]\nsource = "local"\n'
                           f'path = "{instructor.path}"\nschedule = 0\n')
    assert main(["--config", str(config_file), "sync", COURSE]) == 0
    capsys.readouterr()
    assert main(["--config", str(config_file), "status", COURSE, "--json"]) == 0
    good = json.loads(capsys.readouterr().out)["commit"]
    instructor.write("a.txt", "2\n")
    assert main(["--config", str(config_file), "sync", COURSE]) == 0
    capsys.readouterr()
    assert main(["--config", str(config_file), "rollback", COURSE, good[:8]]) == 0
    assert "ON HOLD" in capsys.readouterr().out
    assert main(["--config", str(config_file), "sync", COURSE, "--json"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["on_hold"] and not held["changed"]
    assert main(["--config", str(config_file), "rollback", COURSE, "deadbeef"]) == 2
    assert "not in the history students are served" in capsys.readouterr().err
    assert main(["--config", str(config_file), "resume", COURSE]) == 0
    assert main(["--config", str(config_file), "resume", COURSE]) == 1  # not on hold any more
    capsys.readouterr()
    assert main(["--config", str(config_file), "sync", COURSE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"]
