"""The release-control commands of `f2git` (see f2git/release.py): retract, and release again."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Callable

from .config import Config

COMMANDS = {
    "retract": ("Take files released by mistake out of a course's served history (every snapshot).",
                "f2git retract cs101 solutions/exam.ipynb --reason 'released too early'"),
}


def who() -> str:
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"


def cmd_retract(config: Config, args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, say
    from .release import ReleaseError, release_again, retract

    if args.course not in config.courses:
        say(f"f2git: no course named {args.course!r}" if args.course not in config.broken
            else f"f2git: {config.broken[args.course]}", file=sys.stderr)
        return EXIT_USAGE
    course = config.courses[args.course]
    try:
        if args.release_again:
            released = release_again(config, course, args.paths)
            say(*(f"{course.name}: {path} is no longer held back; the next sync publishes it if the source"
                  " offers it" for path in released))
            return EXIT_OK
        result = retract(config, course, args.paths, reason=args.reason or "", who=who())
    except ReleaseError as error:
        say(f"{course.name}: NOT RETRACTED: {error}", file=sys.stderr)
        return EXIT_FAILED if error.status >= 500 else EXIT_USAGE
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
        return EXIT_OK
    say(f"{course.name}: retracted {', '.join(result.paths)}: {result.rewritten} snapshot(s) rewritten,"
        f" main is now {result.commit[:10]}; the old history's objects are deleted.",
        "  Students who already fetched these files keep their copy: a retract cannot take it back.")
    if result.held:
        say(f"  Held back at the next syncs while the source offers the same version: {', '.join(result.held)}"
            f" (`f2git retract {course.name} --release-again PATH` releases one again).")
    if result.root_rewritten:
        say("  The files were in the course's first commit: students without pullhook must use"
            " nbgitpuller's 'Backup and resync' at their next click.")
    for problem in (result.backup_error, result.mirror_error):
        if problem:
            say(f"  warning: {problem}")
    return EXIT_OK


def add_commands(command: Callable[[str, Callable], argparse.ArgumentParser]) -> None:
    retract = command("retract", cmd_retract)
    retract.add_argument("course", metavar="COURSE")
    retract.add_argument("paths", nargs="+", metavar="PATH", help="a file or folder as named in the course")
    retract.add_argument("--reason", help="why, for the course's history (students do not see it)")
    retract.add_argument("--release-again", action="store_true",
                         help="stop holding back PATH (retracted earlier): the next sync publishes it")
    retract.add_argument("--json", action="store_true", help="the outcome as one JSON object")
