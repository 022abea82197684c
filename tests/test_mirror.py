"""Mirrors: each new snapshot reaches a real second git server, fast-forward only, main only,
with the token only in the push's environment; failures are recorded and retried."""
from __future__ import annotations

import base64
import socket

import pytest

from f2git import status
from f2git.mirror import push
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.hubhelpers import GitHost, git

TOKEN = "mirror-tok-Zq81x-distinctive"


@pytest.fixture
def host(tmp_path):
    with GitHost(tmp_path / "host", token=TOKEN) as server:
        yield server


@pytest.fixture
def mirrored(memory_source, make_config, host):
    host.create("cs101")
    bucket = memory_source("cs101", {"README.md": b"# CS 101\n", "week1/intro.ipynb": b"{}"})

    def make(token: str = TOKEN, url: str | None = None):
        env = {"MIRROR_TOKEN": token}
        config = make_config({"cs101": {"source": "memory", "bucket": "cs101", "mirror": url or host.url("cs101"),
                                        "mirror_token_env": "MIRROR_TOKEN"}}, env=env)
        return config, config.courses["cs101"], env

    return make, bucket


def refs(repo_path) -> dict[str, str]:
    lines = git("--git-dir", str(repo_path), "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def sync(config, course, env, monkeypatch):
    monkeypatch.setenv("MIRROR_TOKEN", env["MIRROR_TOKEN"])
    return sync_course(config, course)


def test_each_snapshot_is_pushed_and_only_main(mirrored, host, monkeypatch):
    make, bucket = mirrored
    config, course, env = make()
    first = sync(config, course, env, monkeypatch)
    assert first.ok and first.mirror_error is None
    repo = CourseRepo.for_course(config, "cs101")
    assert refs(host.root / "cs101.git") == {"refs/heads/main": first.commit}  # the mirror gets only main

    bucket.files["week2/loops.ipynb"] = b'{"cells": []}'
    second = sync(config, course, env, monkeypatch)
    assert second.changed and second.mirror_error is None
    assert refs(host.root / "cs101.git") == {"refs/heads/main": second.commit}
    # the token went as a Basic password in a header, and never into the repo's config
    assert any(h.startswith("Basic ") for h in host.authorizations)
    assert TOKEN not in (repo.path / "config").read_text()


def test_a_failed_push_is_recorded_redacted_and_retried_on_the_next_sync(mirrored, host, monkeypatch):
    make, bucket = mirrored
    wrong = "wrong-tok-Hh27-distinctive"
    config, course, env = make(token=wrong)
    result = sync(config, course, env, monkeypatch)
    assert result.ok, "the snapshot itself succeeded"
    assert result.mirror_error and "push to mirror" in result.mirror_error
    assert wrong not in result.mirror_error and wrong not in str(result.to_json())
    assert result.to_json()["mirror_error"] == result.mirror_error
    assert status.read(config, "cs101").mirror_error == result.mirror_error
    assert refs(host.root / "cs101.git") == {}

    config, course, env = make(token=TOKEN)
    retry = sync(config, course, env, monkeypatch)  # nothing changed at the source: still pushed
    assert retry.ok and not retry.changed and retry.mirror_error is None
    assert refs(host.root / "cs101.git") == {"refs/heads/main": retry.commit}
    assert status.read(config, "cs101").mirror_error is None


def test_a_mirror_that_moved_on_its_own_is_never_overwritten(mirrored, host, monkeypatch, tmp_path):
    make, bucket = mirrored
    config, course, env = make()
    first = sync(config, course, env, monkeypatch)
    # someone commits on the mirror directly
    work = tmp_path / "work"
    git("clone", "-q", str(host.root / "cs101.git"), str(work))
    (work / "rogue.txt").write_text("not from f2git\n")
    git("add", "rogue.txt", cwd=work)
    git("commit", "-qm", "rogue", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    rogue = refs(host.root / "cs101.git")["refs/heads/main"]
    assert rogue != first.commit

    bucket.files["week2/loops.ipynb"] = b"{}"
    second = sync(config, course, env, monkeypatch)
    assert second.ok and second.changed
    assert "never forces" in second.mirror_error
    assert refs(host.root / "cs101.git")["refs/heads/main"] == rogue


def test_a_file_url_mirror_works_without_a_token(memory_source, make_config, tmp_path):
    bare = tmp_path / "plain.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    memory_source("plain", {"a.txt": b"a\n"})
    config = make_config({"plain": {"source": "memory", "bucket": "plain", "mirror": bare.as_uri()}})
    result = sync_course(config, config.courses["plain"])
    assert result.mirror_error is None
    assert refs(bare) == {"refs/heads/main": result.commit}


def test_a_host_that_never_answers_times_out_with_a_clear_error(memory_source, make_config, tmp_path):
    memory_source("slow", {"a.txt": b"a\n"})
    config = make_config({"slow": {"source": "memory", "bucket": "slow"}})
    sync_course(config, config.courses["slow"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.git"
        error = push(CourseRepo.for_course(config, "slow").path, url, TOKEN, timeout=1.5)
    finally:
        listener.close()
    assert error == f"push to mirror {url} timed out after 1.5s"


def test_user_information_in_the_mirror_url_names_the_user_but_is_never_shown(mirrored, host, monkeypatch):
    make, bucket = mirrored
    url = host.url("cs101").replace("http://", "http://oauth2@")
    config, course, env = make(token="bad-tok-Pp93-distinctive", url=url)
    result = sync(config, course, env, monkeypatch)
    assert "oauth2@" not in result.mirror_error and "bad-tok-Pp93" not in result.mirror_error
    sent = [base64.b64decode(h.split()[1]).decode() for h in host.authorizations if h.startswith("Basic ")]
    assert sent and all(s == "oauth2:bad-tok-Pp93-distinctive" for s in sent)
