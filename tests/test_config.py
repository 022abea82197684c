"""Config errors name the file, the course and the key; the CLI exits 2 on them."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from f2git.config import ConfigError, load, parse


def parse_courses(tmp_path, courses, env=None, server=None):
    return parse({"server": server or {}, "courses": courses}, tmp_path / "f.toml", env or {})


@pytest.mark.parametrize("course, key, words", [
    ({"source": "local", "path": "x", "colour": "red"}, "colour", "unknown key"),
    ({"source": "local", "path": 3}, "path", "expected a path string"),
    ({"source": "local", "path": "x", "schedule": "often"}, "schedule", "expected a number"),
    ({"source": "local", "path": "x", "allow_mass_delete": "yes"}, "allow_mass_delete", "true or false"),
    ({"source": "local", "path": "x", "max_file_size": True}, "max_file_size", "expected an integer"),
    ({"source": "local", "path": "x", "include": "*.ipynb"}, "include", "expected a list"),
    ({"source": "local", "path": "x", "groups": [1]}, "groups", "expected a string"),
    ({"source": "nope"}, "source", "unknown source 'nope'"),
    ({"source": "local"}, "path", "missing key"),
    ({"path": "x"}, "source", "missing key"),
    ({"source": "local", "path": "x", "mirror_token_env": "NOT_SET_ANYWHERE"}, "mirror_token_env",
     "NOT_SET_ANYWHERE is not set"),
])
def test_course_errors_name_file_course_and_key(tmp_path, course, key, words):
    with pytest.raises(ConfigError) as error:
        parse_courses(tmp_path, {"cs101": course})
    message = str(error.value)
    assert "f.toml" in message and "[courses.cs101]" in message and f"'{key}'" in message and words in message


@pytest.mark.parametrize("server, key", [({"auth": "magic"}, "auth"), ({"port": 0}, "port"),
                                         ({"refresh_ttl": -1}, "refresh_ttl"), ({"port": "80"}, "port"),
                                         ({"colour": 1}, "colour")])
def test_server_errors_name_the_key(tmp_path, server, key):
    with pytest.raises(ConfigError, match=rf"\[server\].*'{key}'"):
        parse_courses(tmp_path, {}, server=server)


def test_bad_course_name(tmp_path):
    with pytest.raises(ConfigError, match=r"\[courses.CS 101\] course name"):
        parse_courses(tmp_path, {"CS 101": {"source": "local", "path": "x"}})


def test_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "f2git.toml"
    path.write_text('[server]\ndata_dir = "../var"\n[courses.a]\nsource = "local"\npath = "course"\n')
    config = load(path)
    assert config.server.data_dir == tmp_path / "var"
    assert config.courses["a"].options.path == tmp_path / "conf" / "course"
    assert config.server.public_url == "http://127.0.0.1:8765"


def test_config_found_through_environment(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.toml"
    path.write_text("[courses.z]\nsource = 'local'\npath = '.'\n")
    assert list(load(env={"F2GIT_CONFIG": str(path)}).courses) == ["z"]


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "missing.toml")


def test_cli_exits_2_with_one_line_per_server_error(tmp_path):
    path = tmp_path / "f2git.toml"
    path.write_text("[server]\nauth = 'magic'\n[courses.cs101]\nsource = 'local'\npath = '.'\n")
    result = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(path), "sync"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "f2git.toml" in lines[0] and "[server]" in lines[0] and "'auth'" in lines[0]


def test_every_error_at_once_with_the_closest_key(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse({"server": {"prot": 80, "refresh_ttl": -1}, "hub": {"ulr": "x"}, "sevrer": {},
               "courses": {"a": {"source": "local", "path": "x", "shedule": 5, "max_file_size": "big"},
                           "b": {"source": "local", "path": "x"}}}, tmp_path / "f.toml", {})
    errors = error.value.errors
    assert any("[server] unknown key 'prot' (did you mean 'port'?" in e for e in errors)
    assert any("[server] key 'refresh_ttl': must not be negative" in e for e in errors)
    assert any("[hub] unknown key 'ulr' (did you mean 'url'?" in e for e in errors)
    assert any("unknown table [sevrer] (did you mean [server]?" in e for e in errors)
    course_a = [e for e in errors if "[courses.a]" in e]
    assert len(course_a) == 1 and "did you mean 'schedule'?" in course_a[0] and "'max_file_size'" in course_a[0]
    assert not any("[courses.b]" in e for e in errors)


def test_a_broken_course_fails_alone_when_not_strict(tmp_path):
    config = parse({"courses": {"a": {"source": "local", "path": "x", "token_env": "X"},
                                "b": {"source": "local", "path": "x"},
                                "c": {"source": "canvas", "url": "https://c.example.edu", "course_id": 1,
                                      "token_env": "CANVAS_MISSING"}}},
                   tmp_path / "f.toml", {}, strict=False)
    assert list(config.courses) == ["b"] and set(config.broken) == {"a", "c"}
    assert "CANVAS_MISSING is not set" in config.broken["c"] and "unknown key 'token_env'" in config.broken["a"]
    assert config.env_names == ["X", "CANVAS_MISSING"]  # hub-config hands them to the service
    assert config.course_names == ["b", "a", "c"]
    with pytest.raises(ConfigError, match="CANVAS_MISSING"):
        config.course("c")


def test_validate_checks_and_changes_nothing_normalise_derives(tmp_path):
    from f2git.config import DEBRIS, CourseConfig, ServerConfig
    server = ServerConfig(public_url="http://example.org/f2git/", port=70000)
    assert server.validate() == ["key 'port': 70000 is not a TCP port"]
    assert server.public_url == "http://example.org/f2git/"
    server.normalise()
    assert server.public_url == "http://example.org/f2git"
    course = CourseConfig(source="local", exclude=["*.bak"])
    assert course.validate() == [] and course.exclude == ["*.bak"]
    course.normalise()
    assert course.exclude == ["*.bak", *DEBRIS]


@pytest.mark.parametrize("data, key", [
    ({"server": {"data_dir": "var\0x"}}, "[server] key 'data_dir'"),
    ({"courses": {"c": {"source": "local", "path": "course\0"}}}, "[courses.c] key 'path'"),
])
def test_a_nul_in_a_path_is_a_config_error_naming_the_key(tmp_path, data, key):
    # found by test_hostile's hypothesis run: Path.resolve() raised a bare ValueError
    with pytest.raises(ConfigError, match=re.escape(key) + ".*NUL"):
        parse(data, tmp_path / "f2git.toml", {})
