"""What f2git says about a course is true for its state: "students still get the last snapshot"
only when there is one (CLI, the dashboard's live status, the preview), and skipped files are
named with their reason wherever a sync's outcome is shown."""
from __future__ import annotations

import re
import shutil

import requests

from f2git.cli import main
from tests.pagehelpers import events, xsrf
from tests.repohelpers import SourceFolder
from tests.serverhelpers import RunningServer, config_factory

NOT_TRUE = "still get"


def write_config(tmp_path, source_path) -> str:
    path = tmp_path / "f2git.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
                    f'[courses.cs101]\nsource = "local"\npath = "{source_path}"\nmax_file_size = 1000\n')
    return str(path)


def test_the_cli_says_what_students_get_and_names_skipped_files(tmp_path, capsys):
    source = SourceFolder(tmp_path / "source")
    source.write("big.csv", "x" * 2000)
    source.write("a.ipynb", "{}")
    config = write_config(tmp_path, tmp_path / "missing")
    assert main(["--config", config, "sync"]) == 1
    out = capsys.readouterr().out
    assert "students get no files yet: there is no snapshot" in out and NOT_TRUE not in out
    assert main(["--config", config, "status"]) == 1
    out = capsys.readouterr().out
    assert "students get no files yet" in out and NOT_TRUE not in out

    config = write_config(tmp_path, source.path)
    assert main(["--config", config, "sync"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  skipped big\.csv: .*max_file_size", out, re.M), out
    assert main(["--config", config, "status"]) == 0
    assert re.search(r"^  skipped: +big\.csv: .*max_file_size", capsys.readouterr().out, re.M)
    shutil.rmtree(source.path)
    assert main(["--config", config, "sync"]) == 1
    assert "(students still get the last snapshot)" in capsys.readouterr().out
    assert main(["--config", config, "status"]) == 1
    assert re.search(r"students still get the snapshot of \d+ \w+ \d\d:\d\d UTC", capsys.readouterr().out)


def test_the_dashboard_never_promises_a_snapshot_that_does_not_exist(tmp_path):
    source = SourceFolder(tmp_path / "source")
    shutil.rmtree(source.path)
    make = config_factory(tmp_path, {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with RunningServer(make) as server:
        session = requests.Session()
        token = xsrf(session, server.url + "/courses/cs101")
        session.post(server.url + "/courses/cs101/refresh", data={"_xsrf": token}, allow_redirects=False)
        finished = events(session, server.url + "/courses/cs101/events")[-1]
        assert finished["ok"] is False
        assert finished["message"].endswith("Students get no files yet: there is no snapshot.")
        page = session.get(server.url + "/courses/cs101").text
        assert "students get no files yet" in page and NOT_TRUE not in page
        preview = session.post(server.url + "/courses/cs101/preview", data={"_xsrf": token}).text
        assert "students get no files yet" in preview and NOT_TRUE not in preview
        listing = session.get(server.url + "/").text
        assert "1 of 1 failing" in listing

        source.write("a.ipynb", "{}")
        session.post(server.url + "/courses/cs101/refresh", data={"_xsrf": token}, allow_redirects=False)
        finished = events(session, server.url + "/courses/cs101/events")[-1]
        assert finished["ok"] is True
        shutil.rmtree(source.path)
        session.post(server.url + "/courses/cs101/refresh", data={"_xsrf": token}, allow_redirects=False)
        finished = events(session, server.url + "/courses/cs101/events")[-1]
        assert finished["message"].endswith("Students still get the last snapshot.")


def test_the_course_list_counts_skipped_files(tmp_path):
    source = SourceFolder(tmp_path / "source")
    source.write("big.csv", "x" * 2000)
    source.write("bigger.csv", "x" * 3000)
    make = config_factory(tmp_path, {"cs101": {"source": "local", "path": str(source.path), "schedule": 0,
                                               "max_file_size": 1000}})
    with RunningServer(make) as server:
        server.post_json("/api/courses/cs101/refresh")
        row = re.search(r'<tr class="course" data-course="cs101">.*?</tr>', requests.get(server.url + "/").text,
                        re.S).group(0)
        assert re.search(r'href="./courses/cs101#skipped-title">2 files skipped</a>', row), row
        assert "<span class=\"badge\">OK</span>" in requests.get(server.url + "/").text  # not "All 1 OK"
