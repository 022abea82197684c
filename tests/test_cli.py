"""The CLI as scripts use it: --json lines, exit codes, status, check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def f2git(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def setup(tmp_path):
    good, broken = tmp_path / "good", tmp_path / "broken"
    good.mkdir()
    (good / "a.txt").write_text("a")
    (good / "b.txt").write_text("b")
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n'
                      f'[courses.good]\nsource = "local"\npath = "{good}"\n'
                      f'[courses.broken]\nsource = "local"\npath = "{broken}"\n')
    return config, good, broken


def test_sync_json_lines_and_exit_status(setup):
    config, good, broken = setup
    result = f2git(config, "sync", "--json")
    assert result.returncode == 1  # one course failed
    lines = {d["course"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert set(lines["good"]) == {"course", "ok", "changed", "commit", "added", "modified", "deleted", "skipped"}
    assert lines["good"]["ok"] and lines["good"]["added"] == 2 and len(lines["good"]["commit"]) == 40
    assert lines["broken"] == {"course": "broken", "ok": False, "error": lines["broken"]["error"]}
    assert "does not exist" in lines["broken"]["error"]

    only_good = f2git(config, "sync", "good", "--json")
    assert only_good.returncode == 0
    assert json.loads(only_good.stdout) | {"commit": None} == {
        "course": "good", "ok": True, "changed": False, "commit": None, "added": 0, "modified": 0,
        "deleted": 0, "skipped": []}


def test_unknown_course_is_a_usage_error(setup):
    config, _, _ = setup
    result = f2git(config, "sync", "nope")
    assert result.returncode == 2 and "no course named 'nope'" in result.stderr


def test_refused_mass_delete_counts_as_failed(setup):
    config, good, _ = setup
    for i in range(8):
        (good / f"f{i}.txt").write_text(str(i))
    assert f2git(config, "sync", "good").returncode == 0
    for i in range(8):
        (good / f"f{i}.txt").unlink()
    refused = f2git(config, "sync", "good", "--json")
    assert refused.returncode == 1 and "allow-mass-delete" in json.loads(refused.stdout)["error"]
    allowed = f2git(config, "sync", "good", "--json", "--allow-mass-delete")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["deleted"] == 8


def test_status_reports_last_error_and_keeps_the_commit(setup):
    config, good, _ = setup
    f2git(config, "sync")
    status = f2git(config, "status", "--json")
    records = {d["course"]: d for d in map(json.loads, status.stdout.splitlines())}
    assert status.returncode == 1
    assert records["good"]["commit"] and records["good"]["last_error"] is None
    assert records["broken"]["commit"] is None and "does not exist" in records["broken"]["last_error"]
    text = f2git(config, "status", "good").stdout
    assert "last check:" in text and records["good"]["commit"] in text


def test_link_and_check(setup):
    config, _, _ = setup
    f2git(config, "sync", "good")  # a link's --path must be a file of the course's snapshot
    link = f2git(config, "link", "good", "--path", "a.txt", "--hub", "https://hub.example.edu")
    assert link.returncode == 0
    assert link.stdout.startswith("https://hub.example.edu/hub/user-redirect/git-pull?repo=")
    check = f2git(config, "check")
    assert check.returncode == 1
    assert "good: ok (2 released files)" in check.stdout and "broken: FAILED" in check.stdout


def test_config_before_or_after_the_command(setup):
    config, _, _ = setup
    before = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), "link", "good"],
                            capture_output=True, text=True, timeout=60)
    after = subprocess.run([sys.executable, "-m", "f2git.cli", "link", "good", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert before.returncode == after.returncode == 0 and before.stdout == after.stdout


def test_every_command_has_a_description_and_an_example(capsys):
    from f2git.cli import COMMANDS, main
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert COMMANDS[name][0] in text and f"example:\n  {COMMANDS[name][1]}" in text


def test_a_missing_config_file_says_how_to_make_one(tmp_path):
    result = f2git(tmp_path / "nope.toml", "status")
    assert result.returncode == 2
    assert "nope.toml: config file not found" in result.stderr and "--config" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def with_a_broken_course(tmp_path):
    """Two good courses and one whose secret is missing: the config of a hub admin's laptop."""
    for name in ("good", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text(name)
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n'
                      f'[courses.good]\nsource = "local"\npath = "{tmp_path / "good"}"\n'
                      f'[courses.cv]\nsource = "canvas"\nurl = "https://canvas.example.edu"\ncourse_id = 3\n'
                      f'token_env = "F2GIT_TEST_NOT_SET"\n'
                      f'[courses.other]\nsource = "local"\npath = "{tmp_path / "other"}"\n')
    return config


def test_a_course_with_a_missing_secret_fails_alone(with_a_broken_course):
    config = with_a_broken_course
    sync = f2git(config, "sync", "--json")
    lines = {d["course"]: d for d in map(json.loads, sync.stdout.splitlines())}
    assert sync.returncode == 1
    assert lines["good"]["ok"] and lines["other"]["ok"]
    assert not lines["cv"]["ok"] and "F2GIT_TEST_NOT_SET is not set" in lines["cv"]["error"]

    status = f2git(config, "status")
    assert status.returncode == 1 and "good (local)" in status.stdout and "F2GIT_TEST_NOT_SET" in status.stdout
    assert f2git(config, "link", "good").returncode == 0
    assert f2git(config, "link", "cv").stdout.count("git-pull?repo=") == 1  # its link needs no secret
    assert "_f2git_setup" in f2git(config, "hub-config").stdout


def test_serve_serves_the_healthy_courses_and_names_the_broken_one(with_a_broken_course):
    from tests.serveprocess import ServeProcess

    with ServeProcess(with_a_broken_course, env={"TZ": "UTC+14"}) as server:
        status, body = server.request("GET", "/api/courses")
        listed = json.loads(body)
        assert status == 200 and [c["name"] for c in listed["courses"]] == ["good", "other"]
        assert listed["broken"][0]["name"] == "cv" and "F2GIT_TEST_NOT_SET" in listed["broken"][0]["config_error"]
        assert server.post("/api/courses/good/refresh")[1]["ok"]
        page = server.request("GET", "/")[1].decode()
        assert "Not served: configuration broken" in page and "F2GIT_TEST_NOT_SET is not set" in page
        refused, _ = server.request("GET", "/git/cv/info/refs?service=git-upload-pack")
        assert refused == 503
    assert "cv: NOT SERVED:" in server.output() and "Traceback" not in server.output()


def test_check_refuses_what_serve_refuses_and_lists_every_error(tmp_path):
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\nhost = "0.0.0.0"\nauth = "none"\ndata_dir = "data"\n'
                      f'[courses.a]\nsource = "local"\npath = "{tmp_path}"\nshedule = 60\n'
                      f'[courses.b]\nsource = "local"\npath = "{tmp_path}"\nmax_file_size = 0\nexclud = []\n')
    check = f2git(config, "check")
    assert check.returncode == 2
    assert "unknown key 'shedule' for source 'local' (did you mean 'schedule'?" in check.stdout
    assert "unknown key 'exclud' for source 'local' (did you mean 'exclude'?" in check.stdout
    assert "[courses.b] key 'max_file_size': must be positive" in check.stdout
    assert "auth" in check.stdout and "0.0.0.0" in check.stdout
    serve = f2git(config, "serve")
    assert serve.returncode == 2 and "0.0.0.0" in serve.stderr


def test_a_busy_port_is_one_line_before_any_link_and_the_hint_names_a_free_port(setup):
    import re
    import socket

    config, _, _ = setup
    with socket.socket() as taken, socket.socket() as next_one:
        while True:  # two busy ports in a row: the hint must not suggest the second
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            try:
                next_one.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                taken.close()
                taken = socket.socket()
        taken.listen()
        next_one.listen()
        result = f2git(config, "serve", "--port", str(port))
        lines = result.stderr.strip().splitlines()
        suggested = int(re.search(r"the free port (\d+)", lines[0]).group(1))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", suggested))  # it really is free
    assert result.returncode == 2 and suggested not in (port, port + 1)
    assert lines == [
        f"f2git: port {port} is already in use (another f2git or program listens there): pick another, e.g. the"
        f" free port {suggested}, with `f2git serve --port {suggested}` or `make run PORT={suggested}`,"
        " or set [server] port"]
    assert "git-pull" not in result.stdout and "Traceback" not in result.stderr


def test_jupyter_debris_is_excluded_unless_asked_for(tmp_path):
    course = tmp_path / "course"
    for name in ("nb.ipynb", ".ipynb_checkpoints/nb-checkpoint.ipynb", "pkg/__pycache__/m.cpython-311.pyc",
                 ".DS_Store", "week1/Thumbs.db", "week1/.DS_Store"):
        (course / name).parent.mkdir(parents=True, exist_ok=True)
        (course / name).write_text("x")
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n[courses.c]\nsource = "local"\npath = "{course}"\n'
                      f'[courses.all]\nsource = "local"\npath = "{course}"\nexclude_debris = false\n')
    lines = {d["course"]: d for d in map(json.loads, f2git(config, "sync", "--json").stdout.splitlines())}
    assert lines["c"]["added"] == 1 and lines["all"]["added"] == 6


def test_control_characters_in_errors_reach_the_terminal_escaped(tmp_path):
    evil = tmp_path / "x\x1b]0;owned\x07\x1b[2J\rdone"
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n[courses.c]\nsource = "local"\npath = {json.dumps(str(evil))}\n')
    for command in (("sync",), ("status",), ("check",)):
        result = f2git(config, *command)
        assert result.returncode == 1, result
        assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout and "\r" not in result.stdout
        assert "\\x1b]0;owned\\x07" in result.stdout

    from tests.serveprocess import ServeProcess
    with ServeProcess(config) as server:  # serve's log lines reach the terminal too
        assert not server.post("/api/courses/c/refresh")[1]["ok"]
    assert "\\x1b]0;owned" in server.output() and "\x1b" not in server.output()


@pytest.mark.parametrize("tz", [":/etc/localtime", "Asia/Kolkata", "UTC+14", "<+0330>-3:30", "Nowhere/Bogus",
                                "", ":", "EST5EDT,M3.2.0,M11.1.0"])
def test_any_tz_works_in_every_command(setup, tz):
    import os

    config, _, _ = setup
    env = {**os.environ, "TZ": tz}
    for command in (("sync", "good"), ("status", "good"), ("status", "--json"), ("check", "good"), ("link", "good"),
                    ("hub-config",)):
        result = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *command],
                                capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, (command, result.stderr)
    shown = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), "status", "good"],
                           capture_output=True, text=True, timeout=120, env=env).stdout
    assert "last check:  20" in shown


def test_the_systemd_unit_runs_f2git_serve_with_its_config():
    import configparser
    import shlex

    from f2git.cli import parser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(Path(__file__).resolve().parent.parent / "config" / "f2git.service")
    command = shlex.split(unit["Service"]["ExecStart"])
    assert command[0].endswith("/bin/f2git") and command[-1] == "serve"
    args = parser().parse_args(command[1:])
    assert args.command == "serve" and args.config == "/etc/f2git/f2git.toml"
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Install"]["WantedBy"] == "multi-user.target"
    assert "/var/lib/f2git" in unit["Service"]["ReadWritePaths"]  # data_dir is writable under ProtectSystem
