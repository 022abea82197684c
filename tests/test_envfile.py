"""`--env-file` / $F2GIT_ENV_FILE: secrets from a private file, never a file others can read."""
from __future__ import annotations

import os

import pytest

from f2git import cli

SECRET = "studip-pass-Q7#'$x"


def config_needing_a_secret(tmp_path) -> str:
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
                    '[courses.cv]\nsource = "studip"\nurl = "https://studip.example.edu"\ncourse_id = "abc"\n'
                    'username_env = "F2GIT_TEST_USER"\npassword_env = "F2GIT_TEST_PASS"\n')
    return str(path)


def env_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "secrets.env"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("F2GIT_TEST_USER", "F2GIT_TEST_PASS", "F2GIT_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield
    for name in ("F2GIT_TEST_USER", "F2GIT_TEST_PASS"):  # apply() wrote os.environ itself
        os.environ.pop(name, None)


@pytest.mark.parametrize("by_variable", [False, True])
def test_the_secrets_a_config_names_come_from_the_env_file(tmp_path, monkeypatch, capsys, by_variable):
    secrets = env_file(tmp_path, "# Stud.IP\nF2GIT_TEST_USER=ana\nF2GIT_TEST_PASS='studip-pass-Q7#\\'$x'\n")
    config = config_needing_a_secret(tmp_path)
    args = ["--config", config, "status"]
    if by_variable:
        monkeypatch.setenv("F2GIT_ENV_FILE", str(secrets))
    else:
        args = ["--env-file", str(secrets), *args]
    assert cli.main(args) == 0, capsys.readouterr()
    assert os.environ["F2GIT_TEST_PASS"] == SECRET
    assert SECRET not in "".join(capsys.readouterr())


def test_without_it_the_missing_secret_is_named(tmp_path, capsys):
    assert cli.main(["--config", config_needing_a_secret(tmp_path), "check"]) == 2
    assert "F2GIT_TEST_PASS is not set" in capsys.readouterr().out


def test_the_environment_wins_over_the_file(tmp_path, monkeypatch):
    secrets = env_file(tmp_path, "F2GIT_TEST_USER=from-file\nF2GIT_TEST_PASS=x\n")
    monkeypatch.setenv("F2GIT_TEST_USER", "from-env")
    assert cli.main(["--env-file", str(secrets), "--config", config_needing_a_secret(tmp_path), "status"]) == 0
    assert os.environ["F2GIT_TEST_USER"] == "from-env"


@pytest.mark.parametrize("mode, text, says", [
    (0o640, "F2GIT_TEST_PASS=x\n", "other users may read it (mode 640)"),
    (0o604, "F2GIT_TEST_PASS=x\n", "chmod 600"),
    (0o600, "F2GIT_TEST_PASS\n", "no '=' after F2GIT_TEST_PASS"),
])
def test_a_file_others_can_read_or_a_broken_line_stops_with_its_reason(tmp_path, capsys, mode, text, says):
    secrets = env_file(tmp_path, text, mode)
    assert cli.main(["--env-file", str(secrets), "--config", config_needing_a_secret(tmp_path), "check"]) == 2
    err = capsys.readouterr().err
    assert says in err and str(secrets) in err and "Traceback" not in err
    assert "F2GIT_TEST_PASS" not in os.environ


def test_a_missing_file_is_named(tmp_path, capsys):
    assert cli.main(["--env-file", str(tmp_path / "nope.env"), "--config", config_needing_a_secret(tmp_path),
                     "check"]) == 2
    assert f"env file {tmp_path / 'nope.env'}: cannot read it" in capsys.readouterr().err
