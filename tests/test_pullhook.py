"""pullhook's `git-remote-f2git`: nbgitpuller (unmodified) pulls f2git courses through it, as the
student, from f2git or the course's mirror, and the token never lands in a URL, config or log."""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from nbgitpuller import GitPuller

from f2git.config import parse
from pullhook.remote_helper import HelperError, Target, parse_address, transport_env
from tests.hubhelpers import GitHost
from tests.repohelpers import SourceFolder, Student, git, isolated_git
from tests.serverhelpers import RunningServer

STUDENT_TOKEN = "stud-tok-K4v7-distinctive"
MIRROR_TOKEN = "mirror-tok-W8e2-distinctive"
COURSE = "cs101"


# -- addresses and the transport's environment --------------------------------------------

@pytest.mark.parametrize("address, base, course", [
    ("f2git://hub.example.edu/services/f2git/git/cs101", "https://hub.example.edu/services/f2git", "cs101"),
    ("http://127.0.0.1:8765/git/cs101", "http://127.0.0.1:8765", "cs101"),
    ("https://h:8443/git/ma.th-1.git", "https://h:8443", "ma.th-1"),
    ("https://h/git/demo/", "https://h", "demo"),
])
def test_addresses_name_f2git_and_the_course(address, base, course):
    assert parse_address(address) == Target(base, course, f"{base}/git/{course}")


@pytest.mark.parametrize("address", ["ftp://h/git/cs101", "https://h/cs101", "https://h/git/CS101",
                                     "https://h/git/cs101?x=1", "f2git:cs101"])
def test_other_addresses_are_refused_with_the_expected_form(address):
    with pytest.raises(HelperError, match="expected f2git://HOST/git/COURSE"):
        parse_address(address)


def test_token_goes_only_to_the_f2git_origin_and_keeps_existing_git_config():
    target = parse_address("f2git://hub.example.edu/services/f2git/git/cs101")
    env = transport_env({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.askPass", "GIT_CONFIG_VALUE_0": ""},
                        target.git_url, target, STUDENT_TOKEN)
    assert env["GIT_CONFIG_COUNT"] == "2" and env["GIT_CONFIG_KEY_0"] == "core.askPass"
    assert env["GIT_CONFIG_KEY_1"] == "http.https://hub.example.edu/services/f2git/git/cs101.extraHeader"
    assert env["GIT_CONFIG_VALUE_1"] == f"Authorization: token {STUDENT_TOKEN}"
    for mirror in ("https://gitlab.example.edu/c/cs101.git", "http://hub.example.edu/services/f2git/git/cs101",
                   "https://hub.example.edu:444/x", "https://hub.example.edu/user/mallory/x/git/cs101",
                   "https://hub.example.edu/services/f2git/git/cs102"):
        assert STUDENT_TOKEN not in str(transport_env({}, mirror, target, STUDENT_TOKEN))


# -- real pulls ---------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _env(monkeypatch):
    isolated_git(monkeypatch)
    # git finds git-remote-f2git on PATH, as in the single-user image
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", STUDENT_TOKEN)


@pytest.fixture
def source(tmp_path):
    folder = SourceFolder(tmp_path / "source")
    folder.write("README.md", "# CS 101\n")
    folder.write("week1/intro.ipynb", '{"cells": []}\n')
    return folder


def serve(tmp_path, source, monkeypatch, **course):
    """f2git with auth = "token": the student's token stands in for a hub token here."""
    monkeypatch.setenv("F2GIT_TOKENS", f"script-token,{STUDENT_TOKEN}")
    monkeypatch.setenv("MIRROR_TOKEN", MIRROR_TOKEN)

    def make(port):
        # the image trusts this f2git with the student's token (as `f2git hub-config` arranges)
        monkeypatch.setenv("F2GIT_PULLHOOK_TRUSTED", f"http://127.0.0.1:{port}")
        data = {"server": {"data_dir": str(tmp_path / "data"), "port": port, "refresh_ttl": 0,
                           "auth": "token", "tokens_env": "F2GIT_TOKENS"},
                "courses": {COURSE: {"source": "local", "path": str(source.path), "schedule": 0, **course}}}
        return parse(data, tmp_path / "f2git.toml", os.environ)
    return RunningServer(make)


def pullhook_address(server) -> str:
    return f"f2git::{server.git_url(COURSE)}"


def assert_token_nowhere(student: Student, extra_logs: list[str] = ()):
    config = (student.path / ".git" / "config").read_text()
    assert STUDENT_TOKEN not in config and "extraheader" not in config.lower()
    assert STUDENT_TOKEN not in "".join(student.log) + "".join(extra_logs)


def test_pull_as_the_student_through_f2git_then_the_next_click_brings_a_change(tmp_path, source, monkeypatch):
    with serve(tmp_path, source, monkeypatch) as server:
        student = Student(pullhook_address(server), tmp_path / "home" / COURSE)
        student.click()
        assert student.files() == {"README.md": "# CS 101\n", "week1/intro.ipynb": '{"cells": []}\n'}
        source.write("week2/loops.ipynb", "{}\n")  # the instructor releases more
        student.write("notes.txt", "mine\n")         # the student works
        student.click()
        assert student.read("week2/loops.ipynb") == "{}\n" and student.read("notes.txt") == "mine\n"
        # the remote stays the f2git URL; the token is in no URL, config or log
        assert git("remote", "get-url", "origin", cwd=student.path).stdout.decode().strip() == pullhook_address(server)
        assert_token_nowhere(student)


def click(student: Student) -> tuple[list[str], Exception | None]:
    """What nbgitpuller streams to the student's page for one click, and how it ended."""
    lines: list[str] = []
    try:
        for line in GitPuller(student.git_url, str(student.path), branch="main", depth=1).pull():
            lines.append(line)
    except Exception as error:  # nbgitpuller turns it into its error page
        return lines, error
    return lines, None


def test_a_refused_click_shows_the_student_why_and_the_server_logs_it(tmp_path, source, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="f2git.pull")
    with serve(tmp_path, source, monkeypatch) as server:
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-a-valid-token-distinctive")
        # nbgitpuller's ls-remote discards stderr: it must succeed so that the clone shows why
        assert git("ls-remote", pullhook_address(server), check=False).returncode == 0
        student = Student(pullhook_address(server), tmp_path / "home" / COURSE)
        lines, error = click(student)
        assert error is not None and not student.path.exists()
        shown = "".join(lines)
        assert "f2git: you are not logged in to f2git for course 'cs101'" in shown
        assert "HTTP 401" in shown and "not-a-valid-token" not in shown
        assert "refused an unknown user's pull of course cs101: HTTP 401" in caplog.text

        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", STUDENT_TOKEN)  # logged in: the click works
        assert click(student)[1] is None and student.read("README.md") == "# CS 101\n"
        lines, error = click(Student(f"f2git::{server.url}/git/nope", tmp_path / "home" / "nope"))
        assert error is not None and "there is no course 'nope' here" in "".join(lines)

        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-a-valid-token-distinctive")
        lines, error = click(student)  # a folder the student has: nbgitpuller fetches, and shows why
        assert error is not None and "you are not logged in to f2git" in "".join(lines)
        assert student.read("README.md") == "# CS 101\n"


def test_a_course_without_snapshot_tells_the_student_why(tmp_path, monkeypatch):
    missing = SourceFolder(tmp_path / "gone")
    shutil.rmtree(missing.path)  # every sync fails: there is never a snapshot
    with serve(tmp_path, missing, monkeypatch) as server:
        student = Student(pullhook_address(server), tmp_path / "home" / COURSE)
        lines, error = click(student)
        assert error is not None and not student.path.exists()
        assert "remote error: course cs101 has no snapshot yet: " in "".join(lines)


def test_a_failing_source_is_named_with_the_age_of_the_snapshot_the_student_gets(tmp_path, source, monkeypatch):
    with serve(tmp_path, source, monkeypatch) as server:
        student = Student(pullhook_address(server), tmp_path / "home" / COURSE)
        lines, error = click(student)
        assert error is None and not any("could not be updated" in line for line in lines)
        shutil.rmtree(source.path)
        lines, error = click(student)
        assert error is None and student.read("README.md") == "# CS 101\n"
        shown = "".join(lines)
        assert re.search(r"f2git: cs101: the files could not be updated from local folder since \d+ \w+ \d\d:\d\d UTC;"
                         r" you get the last snapshot of \d+ \w+ \d\d:\d\d UTC, less than a minute old", shown), shown


def test_pull_from_the_mirror_after_a_refresh_without_sending_the_hub_token_there(tmp_path, source, monkeypatch):
    with GitHost(tmp_path / "host", token=MIRROR_TOKEN, public_read=True) as host:
        host.create(COURSE)
        with serve(tmp_path, source, monkeypatch, mirror=host.url(COURSE), mirror_token_env="MIRROR_TOKEN") as server:
            student = Student(pullhook_address(server), tmp_path / "home" / COURSE)
            student.click()
            assert student.read("README.md") == "# CS 101\n"
            fetched_from_mirror = len(host.upload_requests)
            assert fetched_from_mirror > 0, "the clone came from the mirror"
            source.write("week2/loops.ipynb", "{}\n")
            student.click()  # the click refreshes f2git, which pushes, then the mirror serves it
            assert student.read("week2/loops.ipynb") == "{}\n"
            assert len(host.upload_requests) > fetched_from_mirror
            assert all(STUDENT_TOKEN not in header for header in host.authorizations)
            assert_token_nowhere(student)


# -- a crafted link: the token goes only to an f2git the image trusts ----------------------

HUB_ENV = {"JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.edu/hub/",
           "JUPYTERHUB_BASE_URL": "/"}


@pytest.mark.parametrize("env, trusted, refused", [
    # the hub's own URLs: its f2git service only, never the users' servers on the same origin
    (HUB_ENV, "https://hub.example.edu/services/f2git", "https://hub.example.edu/user/mallory/x"),
    (HUB_ENV, "http://hub:8081/services/f2git", "https://hub.example.edu"),
    (HUB_ENV, "https://hub.example.edu/services/f2git/", "https://hub.example.edu/services/f2git/../../user/mallory"),
    (HUB_ENV, "https://HUB.example.edu:443/services/f2git", "https://hub.example.edu/services/f2git/x"),
    (HUB_ENV, "https://hub.example.edu/services/f2git", "https://hub.example.edu.evil.org/services/f2git"),
    (HUB_ENV, "https://hub.example.edu/services/f2git", "http://hub.example.edu/services/f2git"),
    (HUB_ENV, "https://hub.example.edu/services/f2git", "https://mallory@hub.example.edu/services/f2git"),
    ({**HUB_ENV, "JUPYTERHUB_BASE_URL": "/jhub/"}, "https://hub.example.edu/jhub/services/f2git",
     "https://hub.example.edu/services/f2git"),
    # exact base URLs listed by the image admin (what `hub-config` writes now)
    ({"F2GIT_PULLHOOK_TRUSTED": "https://hub.example.edu/services/courses"},
     "https://hub.example.edu/services/courses", "https://hub.example.edu/user/mallory/x"),
    ({"F2GIT_PULLHOOK_TRUSTED": "https://hub.example.edu/services/courses/"},
     "https://hub.example.edu/services/courses", "https://hub.example.edu/services/f2git"),
    # origins, as earlier versions wrote: that root and its f2git service, nothing else there
    ({"F2GIT_PULLHOOK_TRUSTED": "http://f2git:8765, https://f2git.example.edu"}, "https://f2git.example.edu",
     "http://f2git:8766"),
    ({"F2GIT_PULLHOOK_TRUSTED": "http://f2git:8765, https://f2git.example.edu"}, "http://f2git:8765",
     "http://f2git:8765/user/mallory/x"),
    ({"F2GIT_PULLHOOK_TRUSTED": "https://hub.example.edu"}, "https://hub.example.edu/services/f2git",
     "https://hub.example.edu/user/mallory/x"),
    ({}, None, "https://hub.example.edu"),
])
def test_only_exact_f2git_base_urls_are_trusted_never_a_whole_origin(env, trusted, refused):
    from pullhook.remote_helper import untrusted
    if trusted:
        assert untrusted(parse_address(f"{trusted}/git/cs101"), env) is None
    reason = untrusted(parse_address(f"{refused}/git/cs101"), env)
    assert reason and "does not trust" in reason and "nothing was sent" in reason


@pytest.mark.parametrize("scheme", ["f2git::http", "f2git::https"])
def test_a_crafted_link_to_another_host_gets_no_token_and_the_student_reads_why(tmp_path, source, monkeypatch,
                                                                                  scheme):
    from tests.httpserver import FileServer
    with serve(tmp_path, source, monkeypatch), FileServer() as stranger:
        stranger.put("/api/courses/cs101/remote", b'{"course": "cs101", "git_url": "", "mirror": null}')
        link = f"{scheme}://127.0.0.1:{stranger.port}/git/{COURSE}"
        clone = git("clone", "--depth", "1", link, str(tmp_path / "crafted"), check=False)
        assert clone.returncode != 0
        assert b"does not trust" in clone.stderr and b"nothing was sent" in clone.stderr
        assert not any(STUDENT_TOKEN in str(request.headers) for request in stranger.requests)
        assert stranger.requests == []  # not even asked: nothing to leak
        # nbgitpuller's own ls-remote goes through too (and sends nothing)
        assert git("ls-remote", link, check=False).returncode == 0 and stranger.requests == []
