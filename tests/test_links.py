"""nbgitpuller links: every part survives URL-encoding, the folder is the course, paths are checked."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from f2git.links import BadLinkPath, course_link, pullhook_url, repo_url, snippets
from f2git.cli import main
from f2git.config import ConfigError, parse

NASTY = "Woche 1/Würfel & Co #1?.ipynb"


@pytest.fixture
def config(make_config):
    return make_config({"cs101": {"source": "local", "path": "/tmp"}},
                       server={"public_url": "http://127.0.0.1:8765/"})


def query(link: str) -> dict[str, str]:
    parts = urlsplit(link)
    values = parse_qs(parts.query, strict_parsing=True)
    assert all(len(v) == 1 for v in values.values())
    return {k: v[0] for k, v in values.items()}


def test_link_opens_a_notebook_whose_name_needs_encoding(config):
    link = course_link(config, "cs101", NASTY, hub_url="https://hub.example.edu/")
    assert link.startswith("https://hub.example.edu/hub/user-redirect/git-pull?")
    assert "#" not in link and " " not in link and link.count("?") == 1
    params = query(link)
    assert params["repo"] == "http://127.0.0.1:8765/git/cs101"
    assert params["branch"] == "main"
    # nbgitpuller sends the browser to urlpath as a URL: it must be percent-encoded itself
    assert "#" not in params["urlpath"] and "?" not in params["urlpath"] and " " not in params["urlpath"]
    assert unquote(params["urlpath"]) == "lab/tree/cs101/" + NASTY


def test_link_without_path_opens_the_course_folder_named_after_the_repo(config):
    params = query(course_link(config, "cs101"))
    assert params["urlpath"] == "lab/tree/cs101"
    assert params["repo"].rsplit("/", 1)[1] == "cs101"  # nbgitpuller's folder name; no .git
    assert course_link(config, "cs101").startswith(config.hub.url + "/hub/")


def test_path_is_normalised_and_escapes_are_refused(config):
    assert unquote(query(course_link(config, "cs101", "/week1//a.ipynb"))["urlpath"]) == "lab/tree/cs101/week1/a.ipynb"
    for bad in ("../other/x.ipynb", ".git/config", "a/\x01b"):
        with pytest.raises(BadLinkPath, match="cannot be in a course"):
            course_link(config, "cs101", bad)


def test_pullhook_links_use_the_remote_helper_and_keep_the_course_last(make_config):
    plain = make_config({"cs101": {"source": "local", "path": "/tmp"}}, server={"public_url": "http://10.0.0.5:8765"})
    plain.hub.pullhook = True
    assert pullhook_url(plain, "cs101") == "f2git::http://10.0.0.5:8765/git/cs101"
    tls = make_config({"cs101": {"source": "local", "path": "/tmp"}},
                      server={"public_url": "https://hub.example.edu/services/f2git"})
    assert pullhook_url(tls, "cs101") == "f2git://hub.example.edu/services/f2git/git/cs101"
    assert repo_url(tls, "cs101") == "https://hub.example.edu/services/f2git/git/cs101"  # pullhook off
    tls.hub.pullhook = True
    params = query(course_link(tls, "cs101", "a b.ipynb"))
    assert params["repo"] == "f2git://hub.example.edu/services/f2git/git/cs101"
    assert params["repo"].rsplit("/", 1)[1] == "cs101"


def test_cli_link_prints_the_link_and_refuses_bad_paths_and_files_not_in_the_course(tmp_path, capsys):
    source = tmp_path / "source"
    (source / "Woche 1").mkdir(parents=True)
    (source / NASTY).write_text("{}")
    path = tmp_path / "f2git.toml"
    path.write_text('[hub]\nurl = "https://hub.example.edu"\npullhook = true\n'
                    f'[server]\ndata_dir = "{tmp_path}"\n[courses.cs101]\nsource = "local"\npath = "{source}"\n')
    assert main(["--config", str(path), "link", "cs101", "--path", NASTY]) == 2  # no snapshot yet
    assert "no snapshot yet" in capsys.readouterr().err
    assert main(["--config", str(path), "sync", "cs101"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "link", "cs101", "--path", NASTY]) == 0
    params = query(capsys.readouterr().out.strip())
    assert params["repo"] == "f2git::http://127.0.0.1:8765/git/cs101"
    assert unquote(params["urlpath"]) == "lab/tree/cs101/" + NASTY
    assert main(["--config", str(path), "link", "cs101", "--path", "Woche 1"]) == 0  # a folder of the course
    capsys.readouterr()
    assert main(["--config", str(path), "link", "cs101", "--path", "Woche 1/typo.ipynb"]) == 2
    assert "'Woche 1/typo.ipynb' is not in the course" in capsys.readouterr().err
    assert main(["--config", str(path), "link", "cs101", "--hub", "http://other:8000", "--path", "../x"]) == 2
    assert "'..' in path" in capsys.readouterr().err


def test_links_open_the_app_the_instructor_picks_and_come_as_lms_snippets(config, tmp_path):
    assert unquote(query(course_link(config, "cs101", NASTY, app="notebook"))["urlpath"]) == "tree/cs101/" + NASTY
    assert query(course_link(config, "cs101", NASTY, app="rstudio"))["urlpath"] == "rstudio/"
    with pytest.raises(BadLinkPath, match="'shiny' is not one of lab, notebook, rstudio"):
        course_link(config, "cs101", app="shiny")
    with pytest.raises(ConfigError, match=r"\[hub\] key 'apps': 'shiny' is not one of lab, notebook, rstudio"):
        parse({"hub": {"apps": ["lab", "shiny"]}, "courses": {}}, tmp_path / "f2git.toml", {})
    link = course_link(config, "cs101", NASTY)
    made = snippets(link, "Würfel [1] <b>")
    assert made["markdown"] == f"[Würfel \\[1\\] <b>]({link})"
    assert made["html"] == f'<a href="{link.replace("&", "&amp;")}" target="_blank" rel="noopener">Würfel [1] &lt;b&gt;</a>'


def test_link_api_answers_the_same_link_and_refuses_bad_paths(tmp_path):
    from tests.serverhelpers import RunningServer, config_factory

    make = config_factory(tmp_path, {"cs101": {"source": "local", "path": str(tmp_path), "schedule": 0}})
    with RunningServer(make) as server:
        status, _, body = server.request("GET", "/api/courses/cs101/link?path=" + quote(NASTY))
        assert status == 200
        answer = json.loads(body)
        assert answer["link"] == course_link(server.config, "cs101", NASTY)
        assert answer["repo"] == f"{server.url}/git/cs101"
        status, _, body = server.request("GET", "/api/courses/cs101/link?path=..%2Fsecret")
        assert status == 400 and "'..' in path" in json.loads(body)["error"]
        assert server.request("GET", "/api/courses/nope/link")[0] == 404
        status, _, body = server.request("GET", "/api/courses/cs101/link?hub=javascript:alert(1)")
        assert status == 400
