"""git smart HTTP through a running f2git server, with the real git client."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from f2git.store import CourseRepo
from tests.repohelpers import SourceFolder, git, git_environ, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serveprocess import ServeProcess, write_config
from tests.serverhelpers import RunningServer, config_factory, wait_until

COURSE = "cs101"
FILES = {"README.md": "# CS 101\n", "week1/intro.ipynb": '{"cells": []}\n', "data/x.csv": "a,b\n1,2\n"}


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "source")
    for path, content in FILES.items():
        folder.write(path, content)
    return folder


@pytest.fixture
def server(tmp_path, source):
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=0)
    with RunningServer(make) as running:
        yield running


def checkout_files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(folder).parts}


@pytest.mark.parametrize("suffix", ["", ".git"])
def test_shallow_clone_gets_the_released_files(server, tmp_path, suffix):
    target = tmp_path / "clone"
    git("clone", "--depth", "1", server.git_url(COURSE, suffix), target)
    assert checkout_files(target) == FILES
    assert git("rev-parse", "--is-shallow-repository", cwd=target).stdout.strip() == b"true"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=target).stdout.strip() == b"main"


@pytest.mark.parametrize("version", ["0", "2"])
def test_ls_remote_shows_only_head_and_main(server, version):
    git("ls-remote", server.git_url(COURSE))  # first click: the first snapshot
    repo = CourseRepo.for_course(server.config, COURSE)
    # Refs a client must never see: the sync state, and anything else someone puts there.
    git("--git-dir", repo.path, "update-ref", "refs/heads/draft", repo.head())
    git("--git-dir", repo.path, "update-ref", "refs/tags/exam", repo.head())
    git("--git-dir", repo.path, "update-ref", "refs/f2git/state", repo.head())  # where f2git 0.1 kept its state

    listed = git("-c", f"protocol.version={version}", "ls-remote", "--symref", server.git_url(COURSE),
                 env=git_environ(GIT_TRACE_PACKET="1"))
    lines = listed.stdout.decode().splitlines()
    assert lines == [f"ref: refs/heads/main\tHEAD", f"{repo.head()}\tHEAD", f"{repo.head()}\trefs/heads/main"]
    # The protocol asked for is the protocol spoken.
    assert (b"< version 2" in listed.stderr) == (version == "2")


@pytest.mark.parametrize("version", ["0", "2"])
def test_fetch_gets_the_new_snapshot(server, source, tmp_path, version):
    target = tmp_path / "clone"
    git("-c", f"protocol.version={version}", "clone", "--depth", "1", server.git_url(COURSE), target)
    source.write("week2/new.ipynb", "new\n")
    git("-c", f"protocol.version={version}", "pull", "--ff-only", cwd=target)
    assert checkout_files(target) == {**FILES, "week2/new.ipynb": "new\n"}


def unrelated_history(repo: Path, commits: int) -> None:
    """`commits` local commits the server has never seen, newer than anything it has."""
    stream = []
    when = int(time.time()) + 3600
    for number in range(commits):
        message = f"local commit {number}"
        stream.append(f"commit refs/heads/local\nmark :{number + 1}\n"
                      f"committer t <t@example.org> {when + number} +0000\ndata {len(message)}\n{message}\n")
        if number:
            stream.append(f"from :{number}\n")
        stream.append("\n")
    git("fast-import", "--quiet", cwd=repo, input="".join(stream).encode())


@pytest.mark.parametrize("commits, options, request_header", [
    # request bodies over 1 KiB are gzipped
    (120, ["-c", "protocol.version=2"], "Content-Encoding: gzip"),
    # bodies over http.postBuffer (here at its minimum, 64 KiB; v0 resends every have in
    # each round) are sent chunked, with no Content-Length
    (2000, ["-c", "protocol.version=0", "-c", "http.postBuffer=65536"], "Transfer-Encoding: chunked"),
])
def test_fetch_with_many_haves(server, source, tmp_path, commits, options, request_header):
    target = tmp_path / "clone"
    git("clone", server.git_url(COURSE), target)
    unrelated_history(target, commits)
    source.write("README.md", "# CS 101, updated\n")
    fetched = git(*options, "fetch", "origin", cwd=target,
                  env=git_environ(GIT_TRACE_CURL="1", GIT_TRACE_CURL_NO_DATA="1"))
    assert f"=> Send header: {request_header}".encode() in fetched.stderr
    shown = git("show", "origin/main:README.md", cwd=target).stdout
    assert shown == b"# CS 101, updated\n"


def test_push_is_refused(server, tmp_path):
    target = tmp_path / "clone"
    git("clone", server.git_url(COURSE), target)
    (target / "README.md").write_text("vandalised\n")
    git("commit", "-qam", "push attempt", cwd=target)
    pushed = git("push", "origin", "main", cwd=target, check=False)
    assert pushed.returncode != 0
    assert b"403" in pushed.stderr and b"read-only" in pushed.stderr
    status, _, _ = server.request("POST", f"/git/{COURSE}/git-receive-pack", body=b"0000",
                                  headers={"Content-Type": "application/x-git-receive-pack-request"})
    assert status == 403
    assert CourseRepo.for_course(server.config, COURSE).files(
        CourseRepo.for_course(server.config, COURSE).head()).keys() == FILES.keys()


def test_unknown_course_is_404(server, tmp_path):
    listed = git("ls-remote", server.git_url("nosuchcourse"), check=False)
    assert listed.returncode != 0
    assert b"no course named 'nosuchcourse'" in listed.stderr
    assert b"not found" in listed.stderr
    status, _, body = server.request("GET", "/git/nosuchcourse.git/info/refs?service=git-upload-pack")
    assert status == 404


def test_only_smart_http_is_served(server):
    status, _, body = server.request("GET", f"/git/{COURSE}/info/refs")
    assert status == 403 and b"smart HTTP" in body
    status, _, _ = server.request("GET", f"/git/{COURSE}/HEAD")
    assert status == 404


# -- no backend outlives its client ---------------------------------------------------------

def backend_processes(repos_dir: Path) -> list[int]:
    """Live processes serving our repos (any descendant of a backend) and our zombie children."""
    marker = f"GIT_PROJECT_ROOT={repos_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if marker in environ.split(b"\0") or (state == "Z" and int(parent) == os.getpid()):
            found.append(int(entry))
    return found


def blocked_writing_a_pipe(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if "pipe_write" in Path(f"/proc/{pid}/wchan").read_text():
                return True
        except OSError:
            continue
    return False


def raw_request(server: RunningServer, head: str, body: bytes = b"", receive_buffer: int = 0) -> socket.socket:
    connection = socket.socket()
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.connect(("127.0.0.1", server.port))
    connection.sendall(head.encode() + body)
    return connection


def test_client_leaving_mid_upload_ends_the_backend(server):
    git("ls-remote", server.git_url(COURSE))
    connection = raw_request(server, (
        f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n"),
        b"5\r\n0032w\r\n")
    assert wait_until(lambda: server.call(lambda: len(server.server.backends)) == 1)
    assert wait_until(lambda: backend_processes(server.config.repos_dir))  # exec'd, waiting for the body
    connection.close()
    assert wait_until(lambda: server.call(lambda: len(server.server.backends)) == 0)
    assert wait_until(lambda: backend_processes(server.config.repos_dir) == [])


def test_a_stalled_upload_times_out_and_ends_the_backend(tmp_path, source):
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}})
    with RunningServer(make, body_timeout=0.5) as server:
        git("ls-remote", server.git_url(COURSE))
        connection = raw_request(server, (
            f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000\r\n\r\n"), b"0032w")
        try:
            assert wait_until(lambda: backend_processes(server.config.repos_dir))
            # The client keeps the connection open but never finishes its body.
            assert wait_until(lambda: backend_processes(server.config.repos_dir) == [], timeout=10)
            assert server.call(lambda: len(server.server.backends)) == 0
        finally:
            connection.close()


def pkt(line: str) -> bytes:
    return b"%04x" % (len(line) + 4) + line.encode()


def test_client_leaving_mid_pack_ends_the_backend(server, source):
    # A pack far larger than the socket buffers, so the backend is still writing when the client leaves.
    (source.path / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    git("ls-remote", server.git_url(COURSE))
    head = CourseRepo.for_course(server.config, COURSE).head()
    body = pkt("command=fetch\n") + b"0001" + pkt(f"want {head}\n") + pkt("no-progress\n") + pkt("done\n") + b"0000"
    connection = raw_request(server, (
        f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nGit-Protocol: version=2\r\n"
        f"Content-Type: application/x-git-upload-pack-request\r\nContent-Length: {len(body)}\r\n\r\n"), body,
        receive_buffer=4096)
    connection.settimeout(30)
    received = connection.recv(65536)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    # The student's side stalls: the server's socket buffer fills, it stops reading the
    # backend, and the backend blocks writing its full pipe. Then the student leaves.
    assert wait_until(lambda: blocked_writing_a_pipe(backend_processes(server.config.repos_dir)))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close()  # a reset, as when a student closes the tab mid-clone
    assert wait_until(lambda: server.call(lambda: len(server.server.backends)) == 0)
    assert wait_until(lambda: backend_processes(server.config.repos_dir) == [])
    # The server still serves.
    assert git("ls-remote", server.git_url(COURSE)).stdout.startswith(head.encode())


def test_the_backend_gets_no_secrets_from_the_server_environment(server, monkeypatch):
    """Source credentials live in the server's environment; git http-backend never sees them."""
    secret = "canvas-token-Zx81!secret"
    monkeypatch.setenv("CANVAS_TOKEN", secret)
    git("ls-remote", server.git_url(COURSE))
    connection = raw_request(server, (
        f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n"))
    try:
        assert wait_until(lambda: backend_processes(server.config.repos_dir))
        environments = [Path(f"/proc/{pid}/environ").read_bytes() for pid in backend_processes(server.config.repos_dir)]
        assert environments and not any(secret.encode() in env for env in environments)
        assert all(b"CANVAS_TOKEN" not in env for env in environments)
    finally:
        connection.close()


def test_f2git_serve_stops_cleanly_on_sigterm_mid_fetch(tmp_path, source):
    """The real CLI entry point: SIGTERM ends the fetch in flight, its backend, and the process."""
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "served"), "refresh_ttl": 0},
                          {COURSE: {"source": "local", "path": str(source.path), "schedule": 3600}})
    with ServeProcess(config) as served:
        git("clone", "--depth", "1", served.git_url(COURSE), tmp_path / "clone")
        assert checkout_files(tmp_path / "clone") == FILES
        repos = tmp_path / "served" / "repos"
        connection = socket.create_connection(("127.0.0.1", served.port))
        connection.sendall((f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/x-git-upload-pack-request\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n").encode())
        try:
            assert wait_until(lambda: backend_processes(repos))
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            assert served.process.wait(timeout=30) == 0
            assert time.monotonic() - started < 10
        finally:
            connection.close()
        assert backend_processes(repos) == []
        assert "stopping" in served.output()


def test_a_herd_of_clones_queues_behind_max_git_processes(tmp_path, source):
    """More simultaneous fetches than `max_git_processes` wait their turn; all succeed."""
    import threading

    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=60, max_git_processes=2)
    with RunningServer(make) as server:
        git("clone", "-q", "--depth", "1", server.git_url(COURSE), str(tmp_path / "warm"))
        peak, done = [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(server.server.backends))
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        failures = []

        def clone(i):
            try:
                git("clone", "-q", "--depth", "1", server.git_url(COURSE), str(tmp_path / f"c{i}"))
            except Exception as error:  # noqa: BLE001 (collected and asserted below)
                failures.append(error)

        clones = [threading.Thread(target=clone, args=(i,)) for i in range(10)]
        for thread in clones:
            thread.start()
        for thread in clones:
            thread.join(120)
        done.set()
        watcher.join()
    assert not failures
    assert all(checkout_files(tmp_path / f"c{i}") == FILES for i in range(10))
    assert 1 <= peak[0] <= 2
