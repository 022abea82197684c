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


def raw_request(server: RunningServer, head: str, body: bytes = b"", receive_buffer: int = 0) -> socket.socket:
    connection = socket.socket()
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.connect(("127.0.0.1", server.port))
    connection.sendall(head.encode() + body)
    return connection


def pkt(line: str) -> bytes:
    return b"%04x" % (len(line) + 4) + line.encode()


def fetch_body(head: str, *capabilities: str) -> bytes:
    """A protocol v2 fetch of `head` (attack tests only; the cache tests replay what real git sent)."""
    return (pkt("command=fetch\n") + b"0001" + b"".join(pkt(f"{c}\n") for c in capabilities)
            + pkt(f"want {head}\n") + pkt("done\n") + b"0000")


def post_head(length: int | None = None, protocol: str = "version=2") -> str:
    size = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nGit-Protocol: {protocol}\r\n"
            f"Content-Type: application/x-git-upload-pack-request\r\n{size}\r\n\r\n")


def pack_cache(server: RunningServer):
    return server.server.app.settings["f2git_packcache"]


def test_stalled_clients_hold_no_git_slot(tmp_path, source):
    """More stalled clients than backend slots (half-sent bodies, and clients that never read
    their pack): git still serves everyone else, and no backend waits for them."""
    (source.path / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=3600, max_git_processes=2)
    with RunningServer(make) as server:
        git("ls-remote", server.git_url(COURSE))
        head = CourseRepo.for_course(server.config, COURSE).head()
        stalled = [raw_request(server, post_head(1000), b"0032want ") for _ in range(3)]
        stalled += [raw_request(server, post_head(), b"5\r\n0032w\r\n") for _ in range(3)]
        # Four different requests for the big pack (four git runs), never read.
        options = ["no-progress", "ofs-delta", "thin-pack", "include-tag"]
        for count in range(1, 5):
            body = fetch_body(head, *options[:count])
            stalled.append(raw_request(server, post_head(len(body)), body, receive_buffer=4096))
        try:
            # ls-remote's two answers, then the four packs: all computed, none waits for its client.
            assert wait_until(lambda: server.call(lambda: pack_cache(server).computed) >= 6, timeout=60)
            assert server.call(lambda: len(server.server.backends)) == 0
            assert backend_processes(server.config.repos_dir) == []
            # Another student's clone is served while all of them still hold their connections.
            git("clone", "-q", "--depth", "1", server.git_url(COURSE), tmp_path / "student")
            assert (tmp_path / "student" / "big.bin").stat().st_size == 6 * 1024 * 1024
        finally:
            for connection in stalled:
                connection.close()


@pytest.mark.parametrize("stored", [False, True], ids=["being-computed", "stored"])
def test_a_client_that_stops_reading_is_dropped(server, source, stored):
    """Whether its answer is still being computed or sent from the cache (sendfile)."""
    (source.path / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    git("ls-remote", server.git_url(COURSE))
    server.call(lambda: setattr(server.server.backends, "stall_timeout", 0.5))
    body = fetch_body(CourseRepo.for_course(server.config, COURSE).head(), "no-progress")
    if stored:
        status, _, answer = server.request("POST", f"/git/{COURSE}/git-upload-pack", body=body, headers={
            "Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"})
        assert status == 200 and len(answer) > 4 * 1024 * 1024
        assert wait_until(lambda: settled(server))
    connection = raw_request(server, post_head(len(body)), body, receive_buffer=4096)
    try:
        connection.settimeout(30)
        assert connection.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(3)  # the student's side reads nothing for a while
        received = 0
        try:
            while chunk := connection.recv(65536):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 4 * 1024 * 1024  # the server ended the connection mid-pack
    finally:
        connection.close()
    assert git("ls-remote", server.git_url(COURSE)).stdout  # and still serves


def test_request_bodies_are_bounded_once_inflated(server):
    """A gzip bomb, too many haves, a too large body: refused with a clear status, and the
    server never holds the inflated bomb."""
    import resource
    import zlib

    git("ls-remote", server.git_url(COURSE))
    head = CourseRepo.for_course(server.config, COURSE).head()
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB inflated
    assert len(bomb) < 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    upload = {"Content-Type": "application/x-git-upload-pack-request"}
    status, _, answer = server.request("POST", f"/git/{COURSE}/git-upload-pack", body=bomb,
                                       headers={**upload, "Content-Encoding": "gzip"})
    assert status == 413 and b"once inflated" in answer
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB
    haves = b"".join(pkt(f"have {'%040x' % n}\n") for n in range(10_001))
    status, _, answer = server.request("POST", f"/git/{COURSE}/git-upload-pack",
                                       body=pkt(f"want {head}\n") + b"0000" + haves + pkt("done\n"), headers=upload)
    assert status == 413 and b"10001 local commits" in answer
    with raw_request(server, post_head(3 * 1024 * 1024)) as connection:  # refused before the body is sent
        connection.settimeout(30)
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than 2048 KiB" in answer
    status, _, answer = server.request("POST", f"/git/{COURSE}/git-upload-pack", body=b"zzzz", headers=upload)
    assert status == 400 and b"pkt-lines" in answer
    assert server.call(lambda: len(server.server.backends)) == 0


@pytest.mark.parametrize("order", [("c", "c.git"), ("c.git", "c")])
def test_course_names_cannot_collide_in_urls(tmp_path, order):
    """/git/c.git is course c; a course named c.git would share its URL, so none may be named so."""
    from f2git.config import ConfigError, parse

    courses = {name: {"source": "local", "path": str(tmp_path)} for name in order}
    with pytest.raises(ConfigError, match=r"\[courses.c.git\] course name must not end in .git"):
        parse({"server": {"data_dir": str(tmp_path / "data")}, "courses": courses}, tmp_path / "f2git.toml", {})


def test_the_backend_gets_no_secrets_from_the_server_environment(server, source, monkeypatch):
    """Source credentials live in the server's environment; git http-backend never sees them."""
    secret = "canvas-token-Zx81!secret"
    monkeypatch.setenv("CANVAS_TOKEN", secret)
    (source.path / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    git("ls-remote", server.git_url(COURSE))
    head = CourseRepo.for_course(server.config, COURSE).head()
    environments = []
    # Catch a backend at work: a few distinct requests for a large pack (each one git run).
    for option in ("no-progress", "ofs-delta", "thin-pack"):
        body = fetch_body(head, option)
        with raw_request(server, post_head(len(body)), body):
            if wait_until(lambda: backend_processes(server.config.repos_dir), timeout=5):
                environments = [Path(f"/proc/{pid}/environ").read_bytes()
                                for pid in backend_processes(server.config.repos_dir)]
                if environments:
                    break
    assert environments and not any(secret.encode() in env for env in environments)
    assert all(b"CANVAS_TOKEN" not in env for env in environments)


def test_f2git_serve_stops_cleanly_on_sigterm_mid_fetch(tmp_path, source):
    """The real CLI entry point: SIGTERM ends the fetches in flight (a half-sent body, a pack
    the client reads slowly), git, and the process."""
    (source.path / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "served"), "refresh_ttl": 0},
                          {COURSE: {"source": "local", "path": str(source.path), "schedule": 3600}})
    with ServeProcess(config) as served:
        git("clone", "--depth", "1", served.git_url(COURSE), tmp_path / "clone")
        assert (tmp_path / "clone" / "README.md").read_text() == FILES["README.md"]
        repos = tmp_path / "served" / "repos"
        head = CourseRepo(repos / f"{COURSE}.git").head()
        uploading = socket.create_connection(("127.0.0.1", served.port))
        uploading.sendall(post_head().encode())
        reading = socket.socket()
        reading.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reading.connect(("127.0.0.1", served.port))
        body = fetch_body(head, "no-progress", "thin-pack")
        reading.sendall(post_head(len(body)).encode() + body)
        try:
            reading.settimeout(30)
            assert reading.recv(100).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            assert served.process.wait(timeout=30) == 0
            assert time.monotonic() - started < 10
        finally:
            uploading.close()
            reading.close()
        assert backend_processes(repos) == []
        assert "stopping" in served.output()


def test_a_herd_of_clones_queues_behind_max_git_processes(tmp_path, source):
    """More simultaneous distinct fetches than `max_git_processes` wait their turn; all succeed."""
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
                # Each depth is a different request: its own git run.
                git("clone", "-q", "--depth", str(i + 2), server.git_url(COURSE), str(tmp_path / f"c{i}"))
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


# -- the pack cache -------------------------------------------------------------------------
# Request bodies are those real git sent: a clone or fetch records them in the cache, and
# the tests replay them.

def cache_call(server: RunningServer, what):
    return server.call(lambda: what(pack_cache(server)))


def settled(server: RunningServer) -> bool:
    """No answer is being computed (prebuilding included)."""
    return cache_call(server, lambda cache: cache.idle)


@pytest.fixture(autouse=True)
def record_requests(monkeypatch):
    """Every request the pack cache is asked (entries keep only the key's digest)."""
    from f2git.server.packcache import PackCache

    opened = PackCache.open

    def recording(cache, request, *args, **kwargs):
        cache.__dict__.setdefault("asked", {})[request.key] = request
        return opened(cache, request, *args, **kwargs)

    monkeypatch.setattr(PackCache, "open", recording)


def stored_requests(server: RunningServer):
    return cache_call(server, lambda cache: [request for key, request in cache.__dict__.get("asked", {}).items()
                                             if key in cache._entries])


def stored_pack_requests(server: RunningServer):
    return [request for request in stored_requests(server)
            if b"deepen" in request.body and b"0009done\n" in request.body]


def replay(server: RunningServer, request) -> bytes:
    headers = {"Content-Type": request.content_type}
    if request.protocol:
        headers["Git-Protocol"] = request.protocol
    status, _, body = server.request("POST", f"/git/{request.course}/git-upload-pack", body=request.body,
                                     headers=headers)
    assert status == 200
    return body


def clone(server: RunningServer, target: Path, version: str = "2", *options: str, course: str = COURSE):
    git("-c", f"protocol.version={version}", "-c", "transfer.fsckObjects=true", "clone", "-q", *options,
        server.git_url(course), target)
    git("fsck", "--strict", "--no-dangling", cwd=target)


def test_repeated_answers_are_byte_exact_and_computed_once(server, source, tmp_path, caplog):
    (source.path / "noise.bin").write_bytes(os.urandom(256 * 1024))  # sent from the file, not from memory
    for version in ("0", "2"):
        clone(server, tmp_path / f"v{version}", version, "--depth", "1")
    requests = stored_pack_requests(server)
    assert sorted(request.protocol for request in requests) == ["", "version=2"]
    assert wait_until(lambda: settled(server))
    computed = cache_call(server, lambda cache: cache.computed)
    for request in requests:
        answers = {replay(server, request) for _ in range(3)}
        assert len(answers) == 1
        stored = cache_call(server, lambda cache: cache._entries[request.key].path).read_bytes()
        assert stored.endswith(answers.pop())
    assert cache_call(server, lambda cache: cache.computed) == computed
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_identical_requests_at_once_share_one_git_run(server, source):
    import threading

    (source.path / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    git("ls-remote", server.git_url(COURSE))
    assert wait_until(lambda: settled(server))
    head = CourseRepo.for_course(server.config, COURSE).head()
    body = fetch_body(head, "no-progress", "ofs-delta")
    computed = cache_call(server, lambda cache: cache.computed)
    answers = []

    def fetch():
        status, _, answer = server.request("POST", f"/git/{COURSE}/git-upload-pack", body=body, headers={
            "Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"})
        answers.append((status, answer))

    clients = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert len(answers) == 6 and {status for status, _ in answers} == {200}
    assert len({answer for _, answer in answers}) == 1 and len(answers[0][1]) > 4 * 1024 * 1024
    assert cache_call(server, lambda cache: cache.computed) == computed + 1


@pytest.mark.parametrize("version", ["0", "2"])
def test_clones_from_the_cache_are_fsck_clean(server, tmp_path, version):
    clone(server, tmp_path / "first", version, "--depth", "1")
    hits = cache_call(server, lambda cache: cache.hits)
    clone(server, tmp_path / "second", version, "--depth", "1")
    assert cache_call(server, lambda cache: cache.hits) > hits
    assert checkout_files(tmp_path / "second") == FILES
    git("-c", f"protocol.version={version}", "-c", "transfer.fsckObjects=true", "pull", "-q", "--ff-only",
        cwd=tmp_path / "second")


def test_no_answer_crosses_courses_or_commits(tmp_path):
    folders = {}
    for name in ("alpha", "beta"):
        folders[name] = SourceFolder(tmp_path / name)
        folders[name].write("README.md", f"# {name}\n")  # same paths, different bytes
    make = config_factory(tmp_path, {name: {"source": "local", "path": str(folder.path), "schedule": 0}
                                     for name, folder in folders.items()}, refresh_ttl=0)
    with RunningServer(make) as server:
        for round in range(2):
            for name in folders:
                clone(server, tmp_path / f"{name}{round}", "2", "--depth", "1", course=name)
                assert (tmp_path / f"{name}{round}" / "README.md").read_text() == f"# {name}\n"
        folders["alpha"].write("README.md", "# alpha, week 2\n")
        clone(server, tmp_path / "alpha-new", "2", "--depth", "1", course="alpha")
        assert (tmp_path / "alpha-new" / "README.md").read_text() == "# alpha, week 2\n"
        git("pull", "-q", "--ff-only", cwd=tmp_path / "alpha0")
        assert (tmp_path / "alpha0" / "README.md").read_text() == "# alpha, week 2\n"
        clone(server, tmp_path / "beta-new", "2", "--depth", "1", course="beta")
        assert (tmp_path / "beta-new" / "README.md").read_text() == "# beta\n"
        # Answers for the commit no longer served are gone, from memory and from disk.
        head = CourseRepo.for_course(server.config, "alpha").head()
        assert wait_until(lambda: settled(server))
        assert cache_call(server, lambda cache: {entry.commit for entry in cache._entries.values()
                                                 if entry.course == "alpha"}) == {head}
        assert [path.name for path in (server.config.server.data_dir / "packcache" / "alpha").iterdir()] == [head]


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path, source):
    (source.path / "noise.bin").write_bytes(os.urandom(300 * 1024))
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=3600, pack_cache_size=700 * 1024)
    with RunningServer(make) as server:
        clone(server, tmp_path / "v0", "0", "--depth", "1")
        first = stored_pack_requests(server)[0]
        clone(server, tmp_path / "v2", "2", "--depth", "1")
        clone(server, tmp_path / "v2d2", "2", "--depth", "2")
        assert wait_until(lambda: settled(server))
        entries = cache_call(server, lambda cache: list(cache._entries.values()))
        assert sum(entry.size for entry in entries) <= 700 * 1024
        assert first.key not in {entry.key for entry in entries}
        on_disk = {path.name for path in (server.config.server.data_dir / "packcache").rglob("*")
                   if path.is_file() and path.parent.parent.name == COURSE and not path.suffix}
        assert on_disk == {entry.key for entry in entries}
        clone(server, tmp_path / "again", "0", "--depth", "1")  # computed again
        assert (tmp_path / "again" / "noise.bin").stat().st_size == 300 * 1024


def test_the_cache_is_reused_after_a_restart_and_half_written_entries_are_never_served(tmp_path, source):
    (source.path / "noise.bin").write_bytes(os.urandom(200 * 1024))
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=3600)
    root = tmp_path / "data" / "packcache"
    with RunningServer(make) as server:
        clone(server, tmp_path / "first", "2", "--depth", "1")
        clone(server, tmp_path / "first0", "0", "--depth", "1")
        packs = {request.protocol: request.key for request in stored_pack_requests(server)}
    # A crash mid-write leaves a temp file; a torn write, an entry shorter than it says.
    # (in the temp folder of a server that stopped: its lock is free)
    stopped = root / ".tmp" / "4242-deadbeef"
    stopped.mkdir()
    (stopped / "lock").touch()
    (stopped / "leftover").write_bytes(b"half an answer")
    torn = next(root.rglob(packs[""]))
    torn.write_bytes(torn.read_bytes()[:-1])
    with RunningServer(make) as server:
        assert not stopped.exists() and not torn.exists()
        clone(server, tmp_path / "second", "2", "--depth", "1")
        assert wait_until(lambda: settled(server))
        # Every answer was reused but the torn one, which was built again, ready for its clone.
        assert cache_call(server, lambda cache: cache.computed) == 1
        clone(server, tmp_path / "second0", "0", "--depth", "1")
        assert cache_call(server, lambda cache: cache.computed) == 1
        assert (tmp_path / "second0" / "noise.bin").read_bytes() == (source.path / "noise.bin").read_bytes()


@pytest.mark.parametrize("version", ["0", "2"])
def test_answers_are_ready_before_the_click(server, source, tmp_path, version):
    """After a release, the clone of the new snapshot and the fetches students will make are
    computed before anyone asks, for the requests real git sent at the release before."""
    def pull(student: str) -> None:
        git("-c", f"protocol.version={version}", "-c", "transfer.fsckObjects=true", "pull", "-q", "--ff-only",
            cwd=tmp_path / student)

    def release(path: str) -> None:
        source.write(path, f"{path}\n")
        git("-c", f"protocol.version={version}", "ls-remote", server.git_url(COURSE))  # a click syncs it
        assert wait_until(lambda: settled(server), timeout=30)

    clone(server, tmp_path / "ann", version, "--depth", "1")  # ann clones snapshot 1
    release("week2/a.ipynb")
    pull("ann")  # 2 from 1
    clone(server, tmp_path / "bob", version, "--depth", "1")  # bob clones 2
    release("week3/b.ipynb")
    pull("ann")  # 3 from 2, shallow since 1
    pull("bob")  # 3 from 2, shallow since 2
    clone(server, tmp_path / "cem", version, "--depth", "1")
    release("week4/c.ipynb")
    assert cache_call(server, lambda cache: cache.prebuilt) > 0
    computed = cache_call(server, lambda cache: cache.computed)
    for student in ("ann", "bob", "cem"):
        pull(student)
    clone(server, tmp_path / "dan", version, "--depth", "1")
    assert cache_call(server, lambda cache: cache.computed) == computed  # nothing left for git to do
    released = {**FILES, **{path: f"{path}\n" for path in ("week2/a.ipynb", "week3/b.ipynb", "week4/c.ipynb")}}
    assert all(checkout_files(tmp_path / student) == released for student in ("ann", "bob", "cem", "dan"))


def test_ref_advertisements_are_answered_without_git(server):
    for version in ("0", "2"):
        git("-c", f"protocol.version={version}", "ls-remote", server.git_url(COURSE))
    assert wait_until(lambda: settled(server))
    spawned = server.call(lambda: server.server.backends.spawned)
    for version in ("0", "2", "0", "2"):
        listed = git("-c", f"protocol.version={version}", "ls-remote", "--symref", server.git_url(COURSE))
        assert listed.stdout.startswith(b"ref: refs/heads/main\tHEAD")
    assert server.call(lambda: server.server.backends.spawned) == spawned


@pytest.mark.parametrize("version", ["0", "2"])
def test_objects_outside_main_cannot_be_fetched_by_id(server, tmp_path, version):
    """Any object the repo holds that main does not reach (as the sync state once did) is
    refused by id, also when the cache holds answers for the same course."""
    clone(server, tmp_path / "clone", version, "--depth", "1")  # the cache is warm
    repo = CourseRepo.for_course(server.config, COURSE)
    blob = git("--git-dir", repo.path, "hash-object", "-w", "--stdin", input=b"exam solutions\n").stdout.decode().strip()
    tree = git("--git-dir", repo.path, "mktree", input=f"100644 blob {blob}\tsolutions.txt\n".encode()).stdout.decode().strip()
    hidden = [git("--git-dir", repo.path, "commit-tree", "-m", "not released", tree).stdout.decode().strip(), blob]
    for oid in hidden:
        fetched = git("-c", f"protocol.version={version}", "fetch", server.git_url(COURSE), oid,
                      cwd=tmp_path / "clone", check=False)
        assert fetched.returncode != 0, oid
        assert git("cat-file", "-e", oid, cwd=tmp_path / "clone", check=False).returncode != 0


def test_refusals_by_git_are_not_stored(server):
    """git http-backend refuses a wrong content type with status 415 and exit status 0."""
    git("ls-remote", server.git_url(COURSE))
    head = CourseRepo.for_course(server.config, COURSE).head()
    body = fetch_body(head, "no-progress")
    for _ in range(2):
        status, _, _ = server.request("POST", f"/git/{COURSE}/git-upload-pack", body=body,
                                      headers={"Content-Type": "text/plain", "Git-Protocol": "version=2"})
        assert status == 415
    assert [request for request in stored_requests(server) if request.content_type == "text/plain"] == []


def test_nbgitpuller_clicks_after_a_release_are_served_ready(server, source, tmp_path):
    """Real nbgitpuller (shallow clone, then fetch and merge on each click): after a release
    every student's click is answered from answers built before it."""
    from tests.repohelpers import Student

    def release(path: str) -> None:
        source.write(path, f"{path}\n")
        git("ls-remote", server.git_url(COURSE))  # a click syncs it
        assert wait_until(lambda: settled(server), timeout=30)

    students = {name: Student(server.git_url(COURSE), tmp_path / name / COURSE) for name in ("ann", "bob", "cem")}
    students["ann"].click()
    release("week2/a.ipynb")
    students["ann"].click()
    students["bob"].click()
    release("week3/b.ipynb")
    for name in ("ann", "bob", "cem"):
        students[name].click()
    release("week4/c.ipynb")
    computed = cache_call(server, lambda cache: cache.computed)
    for name in ("ann", "bob", "cem"):
        students[name].click()
    Student(server.git_url(COURSE), tmp_path / "dan" / COURSE).click()
    assert cache_call(server, lambda cache: cache.computed) == computed
    released = {**FILES, **{path: f"{path}\n" for path in ("week2/a.ipynb", "week3/b.ipynb", "week4/c.ipynb")}}
    assert all(checkout_files(tmp_path / name / COURSE) == released for name in ("ann", "bob", "cem", "dan"))
