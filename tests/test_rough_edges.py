"""The rough edges a newcomer hit (issue 22 item 4), each as the newcomer met it: through the
real `f2git` command, a running `f2git serve` or the dashboard."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.base import counted
from f2git.config import ConfigError, parse
from f2git.server import demokey
from f2git.snapshot import sync_course
from tests.httpserver import FileServer
from tests.serverhelpers import RunningServer, config_factory
from tests.serveprocess import ServeProcess, write_config

ROOT = Path(__file__).resolve().parent.parent


def f2git(config: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, **kwargs)


@pytest.fixture
def folder(tmp_path) -> Path:
    made = tmp_path / "course"
    made.mkdir()
    (made / "a.txt").write_text("a\n")
    return made


# --- check: every error in one run --------------------------------------------------------------

def test_check_reports_every_error_of_a_config_in_one_run(tmp_path, folder):
    config = tmp_path / "f2git.toml"
    config.write_text(f'''[server]
data_dir = "data"
public_url = "f2git.example.org"
[courses.BadName]
source = "local"
path = "{folder}"
schedule = -5
[courses.nosource]
sorce = "local"
max_file_size = 0
[courses.typo]
source = "local"
pth = "{folder}"
schedule = -1
[courses.gone]
source = "local"
path = "{tmp_path / 'no such folder'}"
''')
    done = f2git(config, "check")
    out = done.stdout + done.stderr
    assert done.returncode == 2
    for expected in ("[courses.BadName] course name must match", "[courses.BadName] key 'schedule': must not be negative",
                     "[courses.nosource] missing key 'source'", "[courses.nosource] key 'max_file_size': must be positive",
                     "unknown key 'pth'", "did you mean 'path'", "[courses.typo] key 'schedule': must not be negative",
                     "[server] key 'public_url': 'f2git.example.org' is not an absolute http(s) URL"):
        assert expected in out, (expected, out)


def test_check_reports_a_missing_local_path_beside_the_other_courses_errors(tmp_path, folder):
    config = tmp_path / "f2git.toml"
    config.write_text(f'''[server]
data_dir = "data"
[courses.BadName]
source = "local"
path = "{folder}"
[courses.gone]
source = "local"
path = "{tmp_path / 'no such folder'}"
''')
    done = f2git(config, "check")
    out = done.stdout + done.stderr
    assert done.returncode == 2
    for expected in ("[courses.BadName] course name must match",
                     f"gone: FAILED: local folder {tmp_path / 'no such folder'} does not exist"):
        assert expected in out, (expected, out)


def test_a_local_path_that_does_not_exist_fails_check_alone(tmp_path, folder):
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n[courses.ok]\nsource = "local"\npath = "{folder}"\n'
                      f'[courses.gone]\nsource = "local"\npath = "{tmp_path / "missing"}"\n')
    done = f2git(config, "check")
    assert done.returncode == 1, done.stdout
    assert "ok: ok (1 released file)" in done.stdout  # and one file is not "1 released files"
    assert f"gone: FAILED: local folder {tmp_path / 'missing'} does not exist" in done.stdout


@pytest.mark.parametrize("table, key, value", [
    ("hub", "url", "hub.example.org"), ("hub", "url", "ftp://hub.example.org"), ("hub", "url", "https://"),
    ("server", "public_url", "f2git.example.org/f2git"), ("server", "public_url", "javascript:alert(1)")])
def test_hub_url_and_public_url_must_be_absolute_http_urls(tmp_path, table, key, value):
    data = {"server": {"data_dir": str(tmp_path / "data")}, "courses": {}}
    data.setdefault(table, {})[key] = value
    with pytest.raises(ConfigError, match=rf"\[{table}\] key '{key}': .* is not an absolute http\(s\) URL"):
        parse(data, tmp_path / "f2git.toml", {})


def test_hub_option_must_be_an_absolute_http_url(tmp_path, folder):
    config = write_config(tmp_path / "f2git.toml", {"data_dir": "data"}, {"c": {"source": "local", "path": str(folder)}})
    done = f2git(config, "link", "c", "--hub", "hub.example.org")
    assert done.returncode == 2 and "--hub: 'hub.example.org' is not an absolute http(s) URL" in done.stderr
    assert "Traceback" not in done.stderr


# --- a CLI sync beside a running server ---------------------------------------------------------

def test_dashboard_and_api_show_the_snapshot_git_serves_after_a_cli_sync_even_when_the_next_sync_fails(tmp_path, folder):
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data"), "refresh_ttl": 0},
                          {"c": {"source": "local", "path": str(folder), "schedule": 0}})
    with ServeProcess(config) as server:
        status, answer = server.post("/api/courses/c/refresh")
        first = answer["commit"]
        status, body = server.request("GET", "/api/courses/c")
        assert json.loads(body)["commit"] == first

        (folder / "b.txt").write_text("b\n")
        assert f2git(config, "sync", "c").returncode == 0  # beside the server, on the same data dir
        # what git serves (read in the repo: a fetch through the server would make it sync itself)
        served = subprocess.run(["git", "--git-dir", str(tmp_path / "data" / "repos" / "c.git"), "rev-parse", "main"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert served != first
        for _ in range(2):  # before the server syncs again, and after its sync failed
            status, body = server.request("GET", "/api/courses/c")
            assert json.loads(body)["commit"] == served
            status, page = server.request("GET", "/courses/c")
            assert f'<code id="commit" class="commit">{served}</code>'.encode() in page
            shutil.move(folder, tmp_path / "moved away")  # the server's own next sync fails
            status, answer = server.post("/api/courses/c/refresh")
            assert answer["ok"] is False
            shutil.move(tmp_path / "moved away", folder)


# --- words ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, noun, expected", [(0, "file", "0 files"), (1, "file", "1 file"), (2, "course", "2 courses"),
                                                   (1, "released file", "1 released file"), (1, "sync", "1 sync")])
def test_counts_have_the_right_number(count, noun, expected):
    assert counted(count, noun) == expected


def test_serve_says_one_course_not_course_s(tmp_path, folder):
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"c": {"source": "local", "path": str(folder), "schedule": 0}})
    with ServeProcess(config) as server:
        pass
    log = server.output()
    assert "serving 1 course at" in log and "course(s)" not in log, log


def test_the_course_page_counts_right_and_offers_the_course_folder_instead_only_when_a_file_is_chosen(tmp_path, folder):
    make = config_factory(tmp_path, {"c": {"source": "local", "path": str(folder), "schedule": 0}})
    with RunningServer(make) as server:
        server.post_json("/api/courses/c/refresh")
        folder_page = requests.get(server.url + "/courses/c").text
        file_page = requests.get(server.url + "/courses/c", params={"path": "a.txt"}).text
    assert "1 file, " in folder_page and "1 files" not in folder_page  # the snapshot line under "What students get"
    instead = re.compile(r'<span class="folder-instead"( hidden)?>')
    assert instead.search(folder_page).group(1) == " hidden"  # the folder is chosen: no "instead"
    assert instead.search(file_page).group(1) is None


# --- `make run`: the dashboard hands the demo JupyterLab's token only to a browser that showed it ----

DEMO_TOKEN = "demo-tok-Qz8-distinctive"


def try_link(html: str) -> str:
    return unescape(re.search(r'id="try-link" class="[^"]*" href="([^"]+)"', html).group(1))


def test_the_demo_dashboard_gives_the_token_to_its_own_users_browser_and_no_other(tmp_path, folder, monkeypatch):
    monkeypatch.setenv("F2GIT_DEMO_TOKEN", DEMO_TOKEN)  # what `make run` hands its serve
    make = config_factory(tmp_path, {"c": {"source": "local", "path": str(folder), "schedule": 0}}, auth="none")
    with RunningServer(make) as server:
        server.post_json("/api/courses/c/refresh")
        # this test's browser runs as the same local user as f2git: the kernel's socket table says so
        mine = requests.Session()
        assert parse_qs(urlsplit(try_link(mine.get(server.url + "/courses/c").text)).query)["token"] == [DEMO_TOKEN]
        assert f"token={DEMO_TOKEN}" in mine.get(server.url + "/courses/c/link", params={"path": "a.txt"}).json()["try"]
        assert f"token={DEMO_TOKEN}" in mine.get(server.url + "/open/c", allow_redirects=False).headers["Location"]
        page = mine.get(server.url + "/courses/c").text  # the link to copy into the LMS never carries it
        assert "token=" not in unescape(re.search(r'id="link" class="link" type="text" readonly value="([^"]+)"', page).group(1))

        # f2git run by another local user than this browser's: no token
        monkeypatch.setattr(demokey, "server_uid", lambda: os.geteuid() + 1)
        stranger = requests.Session()
        assert "token=" not in try_link(stranger.get(server.url + "/courses/c").text)
        answer = stranger.get(server.url + "/?demo=guessed", allow_redirects=False)
        assert answer.status_code == 303 and answer.headers["Location"] == "/" and "Set-Cookie" not in answer.headers
        assert "token=" not in stranger.get(server.url + "/courses/c/link", params={"path": "a.txt"}).json()["try"]
        assert "token=" not in stranger.get(server.url + "/open/c", allow_redirects=False).headers["Location"]

        # the dashboard link `make run` printed works for a browser the socket table cannot place
        owner = requests.Session()
        answer = owner.get(f"{server.url}/courses/c?path=a.txt&demo={DEMO_TOKEN}", allow_redirects=False)
        assert answer.status_code == 303 and answer.headers["Location"] == "/courses/c?path=a.txt"  # no token kept
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and DEMO_TOKEN not in cookie
        page = owner.get(server.url + answer.headers["Location"]).text
        assert parse_qs(urlsplit(try_link(page)).query)["token"] == [DEMO_TOKEN]
        assert f"token={DEMO_TOKEN}" in owner.get(server.url + "/open/c", allow_redirects=False).headers["Location"]


def test_the_socket_tables_owner_is_read_for_ipv4_and_ipv6_loopback():
    """The kernel table's own format: the peer of a real loopback connection is found, with its owner."""
    found = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            listener = socket.socket(family)
            listener.bind((host, 0))
        except OSError:  # a machine without IPv6 on its loopback
            listener.close()
            continue
        with listener:
            listener.listen()
            with socket.create_connection(listener.getsockname()[:2]), listener.accept()[0] as accepted:
                handler = SimpleNamespace(request=SimpleNamespace(connection=SimpleNamespace(
                    stream=SimpleNamespace(socket=accepted))))
                assert demokey.peer_uid(handler) == os.geteuid()
                found.append(host)
    assert "127.0.0.1" in found


def test_without_make_runs_token_the_demo_parameter_opens_nothing(tmp_path, folder, monkeypatch):
    monkeypatch.delenv("F2GIT_DEMO_TOKEN", raising=False)
    make = config_factory(tmp_path, {"c": {"source": "local", "path": str(folder), "schedule": 0}}, auth="none")
    with RunningServer(make) as server:
        server.post_json("/api/courses/c/refresh")
        browser = requests.Session()
        answer = browser.get(server.url + "/?demo=", allow_redirects=False)
        assert answer.status_code == 303 and "Set-Cookie" not in answer.headers
        assert "token=" not in try_link(browser.get(server.url + "/courses/c").text)


# --- preview, mass delete, Ctrl-C ----------------------------------------------------------------

def test_a_preview_does_not_log_changed(make_config, folder, caplog):
    config = make_config({"c": {"source": "local", "path": str(folder)}})
    with caplog.at_level(logging.INFO, logger="f2git"):
        result = sync_course(config, config.courses["c"], dry_run=True)
    assert result.ok and result.changed
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("c: ")]
    assert lines == ["c: preview: the next sync would change files"], lines


def test_the_mass_delete_hint_names_the_course_and_the_config_file(tmp_path):
    source = tmp_path / "many"
    source.mkdir()
    for i in range(8):
        (source / f"f{i}.txt").write_text(str(i))
    config = write_config(tmp_path / "my config.toml", {"data_dir": "data"}, {"cs101": {"source": "local", "path": str(source)}})
    assert f2git(config, "sync").returncode == 0
    for i in range(8):
        (source / f"f{i}.txt").unlink()
    (source / "left.txt").write_text("x")
    done = f2git(config, "sync", "--json")
    error = json.loads(done.stdout)["error"]
    assert f"run `f2git --config '{config}' sync cs101 --allow-mass-delete` once" in error, error
    assert f"allow_mass_delete = true in [courses.cs101] of {config}" in error
    rerun = subprocess.run(re.search(r"`(f2git .*?)`", error).group(1).replace("f2git", f"{sys.executable} -m f2git.cli", 1),
                           shell=True, capture_output=True, text=True, cwd=ROOT)  # the hint runs as printed
    assert rerun.returncode == 0, rerun.stderr


def test_ctrl_c_during_sync_says_the_last_snapshot_is_kept(tmp_path):
    with FileServer() as web:
        web.put("/notes.txt", b"x" * 100_000)
        config = write_config(tmp_path / "f2git.toml", {"data_dir": "data"},
                              {"web": {"source": "http", "url": web.url("/notes.txt"), "min_read_speed": 0}})
        assert f2git(config, "sync").returncode == 0
        web.put("/notes.txt", b"y" * 100_000)
        web.fault, web.trickle_interval = "trickle", 0.05
        before = web.bytes_sent
        # as from a terminal: Ctrl-C's default action (a test before may have left SIGINT ignored in
        # this process, and an ignored signal stays ignored in its children: Python then never raises)
        process = subprocess.Popen([sys.executable, "-m", "f2git.cli", "--config", str(config), "sync"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while web.bytes_sent < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's download: nothing to await
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted; every course keeps its last snapshot" in err, err
