"""`f2git sync` progress: live bars on a terminal, throttled plain lines in logs, stdout untouched."""
from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys

from rich.console import Console

from f2git.progress import LiveProgress, PlainProgress, reporter
from f2git.outcome import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def download_events(course: str, paths: list[str]) -> list[Progress]:
    return [Progress(course, "downloading", i, len(paths), p) for i, p in enumerate(paths)]


def test_plain_lines_name_each_phase_and_throttle_per_file_lines():
    out, clock = io.StringIO(), FakeClock()
    show = PlainProgress(out, interval=5.0, clock=clock)
    show(Progress("cs101", "listing"))
    paths = [f"week{i}/notebook.ipynb" for i in range(1, 5)]
    events = download_events("cs101", paths)
    show(events[0])
    clock.now = 1.0
    show(events[1])  # within the interval: no line
    clock.now = 6.0
    show(events[2])
    show(events[3])
    show(Progress("cs101", "writing", 4, 4))
    show(Progress("cs101", "finished"))
    assert out.getvalue().splitlines() == [
        "cs101: listing",
        "cs101: downloading 1/4: week1/notebook.ipynb",
        "cs101: downloading 3/4: week3/notebook.ipynb",
        "cs101: writing the snapshot (4 files)",
    ]


def test_live_bars_show_course_count_and_current_file_then_vanish():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    live = LiveProgress(console, results_on_same_terminal=False)
    with live.bars:
        live(Progress("cs101", "listing"))
        for event in download_events("cs101", ["a.ipynb", "data/[red]x[/red].csv", "c.txt"])[:2]:
            live(event)
        live.bars.refresh()
        shown = out.getvalue()
        assert "cs101" in shown and "downloading" in shown and "1/3" in shown
        assert "data/[red]x[/red].csv" in shown  # file names are shown as they are, never as markup
        live(Progress("cs101", "finished"))
        assert live.bars.tasks == []


def test_cli_shows_plain_progress_on_stderr_and_keeps_json_stdout_unchanged(tmp_path):
    source = tmp_path / "course"
    source.mkdir()
    for name in ("intro.ipynb", "data.csv"):
        (source / name).write_text(name)
    config = tmp_path / "f2git.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n[courses.demo]\nsource = "local"\npath = "{source}"\n')

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), "sync", *args],
                              capture_output=True, text=True, timeout=60)

    plain = run()
    assert plain.returncode == 0
    assert plain.stdout.startswith("demo: +2 ~0 -0, commit ")
    assert plain.stderr.splitlines()[:2] == ["demo: listing", "demo: downloading 1/2: data.csv"]

    (source / "intro.ipynb").write_text("changed")
    as_json = run("--json")
    assert as_json.stderr == ""
    (line,) = as_json.stdout.splitlines()
    assert json.loads(line)["modified"] == 1


def test_reporter_picks_live_bars_on_a_terminal_and_plain_lines_elsewhere():
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        with reporter(terminal) as progress:
            assert isinstance(progress, LiveProgress)
            progress(Progress("cs101", "listing"))
    os.close(leader)
    with reporter(io.StringIO()) as progress:
        assert isinstance(progress, PlainProgress)
    log = io.StringIO()
    with reporter(log, quiet=True) as progress:
        progress(Progress("cs101", "listing"))
    assert log.getvalue() == ""
