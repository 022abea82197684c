"""The release-control commands of `f2git` (see f2git/release.py): retract (and release again),
rollback, resume, pin."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Callable

from .config import Config
from .console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, say

COMMANDS = {
    "retract": ("Take files released by mistake out of a course's served history (every snapshot).",
                "f2git retract cs101 solutions/exam.ipynb --reason 'released too early'"),
    "rollback": ("Publish an earlier snapshot's files as a new snapshot, then hold the course until resumed.",
                 "f2git rollback cs101 3f2a9c1"),
    "resume": ("Let syncs publish again after a rollback.", "f2git resume cs101"),
    "pin": ("Serve a snapshot as branch release/NAME beside main (later snapshots do not move it).",
            "f2git pin cs101 exam-2026 3f2a9c1"),
}


def for_course(run: Callable) -> Callable[[Config, argparse.Namespace], int]:
    """A command of one course: `run(config, course, args)`, or exit status 2 when there is none."""
    def command(config: Config, args: argparse.Namespace) -> int:

        if args.course in config.courses:
            return run(config, config.courses[args.course], args)
        name = args.course
        say(f"f2git: {config.broken[name]}" if name in config.broken else f"f2git: no course named {name!r}",
            file=sys.stderr)
        return EXIT_USAGE
    return command


@for_course
def cmd_pin(config: Config, course, args: argparse.Namespace) -> int:
    from .links import link_in_course
    from .release import pin, unpin

    if args.remove:
        _, code = attempt(course, "PIN NOT REMOVED", lambda: unpin(config, course, args.name))
        if code == EXIT_OK:
            say(f"{course.name}: release/{args.name} is no longer served; links to it stop working")
        return code
    commit, code = attempt(course, "NOT PINNED", lambda: pin(config, course, args.name, args.commit))
    if commit is None:
        return code
    say(f"{course.name}: release/{args.name} serves snapshot {commit[:10]}; its link:",
        f"  {link_in_course(config, course.name, branch=f'release/{args.name}')}")
    return EXIT_OK


@for_course
def cmd_rollback(config: Config, course, args: argparse.Namespace) -> int:
    from .release import rollback

    result, code = attempt(course, "NOT ROLLED BACK", lambda: rollback(config, course, args.commit, who=who()))
    if result is None or args.json:
        return code if result is None else answered_json(result)
    say(f"{course.name}: students now get the files of snapshot {result.to[:10]} (new snapshot {result.commit[:10]}).",
        f"  The course is ON HOLD: no sync publishes until `f2git resume {course.name}`.")
    if result.mirror_error:
        say(f"  warning: {result.mirror_error}")
    return EXIT_OK


@for_course
def cmd_resume(config: Config, course, args: argparse.Namespace) -> int:
    from .release import resume

    if not resume(config, course):
        say(f"{course.name}: not on hold", file=sys.stderr)
        return EXIT_FAILED
    say(f"{course.name}: resumed; the next sync publishes what the source offers")
    return EXIT_OK


def attempt(course, refused: str, call: Callable):
    """(call()'s result, exit status 0), or (None, the exit status) after saying why it was refused."""
    from .release import ReleaseError

    try:
        return call(), EXIT_OK
    except ReleaseError as error:
        say(f"{course.name}: {refused}: {error}", file=sys.stderr)
        return None, EXIT_FAILED if error.status >= 500 else EXIT_USAGE


def answered_json(result) -> int:
    print(json.dumps(result.to_json()), flush=True)
    return 0


def who() -> str:
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"


@for_course
def cmd_retract(config: Config, course, args: argparse.Namespace) -> int:
    from .release import release_again, retract

    if args.release_again:
        released, code = attempt(course, "NOT RELEASED AGAIN", lambda: release_again(config, course, args.paths))
        for path in released or ():
            say(f"{course.name}: {path} is no longer held back; the next sync publishes it if the source offers it")
        return code
    result, code = attempt(course, "NOT RETRACTED",
                           lambda: retract(config, course, args.paths, reason=args.reason or "", who=who()))
    if result is None or args.json:
        return code if result is None else answered_json(result)
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
    rollback = command("rollback", cmd_rollback)
    rollback.add_argument("course", metavar="COURSE")
    rollback.add_argument("commit", metavar="COMMIT", help="a snapshot's commit id (or a unique prefix)")
    rollback.add_argument("--json", action="store_true", help="the outcome as one JSON object")
    resume = command("resume", cmd_resume)
    resume.add_argument("course", metavar="COURSE")
    pinned = command("pin", cmd_pin)
    pinned.add_argument("course", metavar="COURSE")
    pinned.add_argument("name", metavar="NAME", help="served as branch release/NAME")
    pinned.add_argument("commit", metavar="COMMIT", nargs="?", help="a snapshot id (default: the current one)")
    pinned.add_argument("--remove", action="store_true", help="stop serving release/NAME")
