"""What `f2git sync` shows while it works: a live bar per course on a terminal, plain lines otherwise.

Both take the engine's `Progress` events (phases listing, downloading, writing, finished)
and write to stderr, so stdout keeps only results (`--json` stays one object per line).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import IO, Callable, Iterator

from connectors.base import counted

from .outcome import Progress

PLAIN_INTERVAL = 5.0  # s between two "downloading" lines of one course when not on a terminal


class PlainProgress:
    """One line per phase, and a download line at most every PLAIN_INTERVAL seconds (logs, CI)."""

    def __init__(self, stream: IO[str], *, interval: float = PLAIN_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self._phase: dict[str, str] = {}
        self._last_line: dict[str, float] = {}

    def __call__(self, event: Progress) -> None:
        if event.phase == "finished":
            self._phase.pop(event.course, None)
            self._last_line.pop(event.course, None)
            return  # the CLI prints the result line itself
        now = self.clock()
        new_phase = self._phase.get(event.course) != event.phase
        if not new_phase and now - self._last_line.get(event.course, 0.0) < self.interval:
            return
        self._phase[event.course] = event.phase
        self._last_line[event.course] = now
        if event.phase == "downloading":
            line = f"{event.course}: downloading {event.done + 1}/{event.total}: {event.path}"
        elif event.phase == "writing":
            line = f"{event.course}: writing the snapshot ({counted(event.total, 'file')})"
        else:
            line = f"{event.course}: {event.phase}"
        print(line, file=self.stream, flush=True)


class LiveProgress:
    """A rich progress bar per course, removed when the course is done."""

    def __init__(self, console, *, results_on_same_terminal: bool) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)

        self.bars = Bars(SpinnerColumn(), TextColumn("[bold]{task.fields[course]}"),
                         TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TextColumn("{task.fields[path]}", markup=False),
                         console=console, transient=True,
                         # result lines printed meanwhile go above the bars, unless stdout is a pipe
                         redirect_stdout=results_on_same_terminal)
        self._tasks: dict[str, int] = {}

    def __call__(self, event: Progress) -> None:
        task = self._tasks.get(event.course)
        if event.phase == "finished":
            if task is not None:
                self.bars.remove_task(self._tasks.pop(event.course))
            return
        if task is None:
            task = self._tasks[event.course] = self.bars.add_task(event.phase, course=event.course, path="",
                                                                  total=None)
        total = event.total or None
        self.bars.update(task, description=event.phase, completed=event.done, total=total,
                         path=event.path or "")


@contextmanager
def reporter(stream: IO[str] | None = None, *, quiet: bool = False) -> Iterator[Callable[[Progress], None]]:
    """The progress callback for a sync run: live bars on a terminal, else plain lines.

    `quiet` (e.g. with `--json`) drops the plain lines; a terminal still gets the live bars,
    which vanish when done.
    """
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        live = LiveProgress(Console(file=stream), results_on_same_terminal=sys.stdout.isatty())
        with live.bars:
            yield live
    elif quiet:
        yield lambda event: None
    else:
        yield PlainProgress(stream)
