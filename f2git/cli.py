"""`f2git` command line. Exit status: 0 all fine, 1 a course failed, 2 usage or config error."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone

from . import __version__, explain, hubconfig, status
from .config import Config, ConfigError, load
from .links import course_link, git_url, link_in_course

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _courses(config: Config, names: list[str]) -> list:
    return [config.course(name) for name in names] if names else list(config.courses.values())


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cmd_sync(config: Config, args: argparse.Namespace) -> int:
    from .progress import reporter
    from .snapshot import sync_course

    failed = False
    with reporter(quiet=args.json) as progress:
        for course in _courses(config, args.courses):
            result = sync_course(config, course, allow_mass_delete=args.allow_mass_delete, progress=progress)
            failed |= not result.ok
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            elif not result.ok:
                head = status.read(config, course.name).commit
                print(f"{course.name}: FAILED: {result.error} ({explain.what_students_get(head)})", flush=True)
            else:
                what = (f"+{result.added} ~{result.modified} -{result.deleted}, commit {result.commit[:10]}"
                        if result.changed else "no change")
                print(f"{course.name}: {what}", flush=True)
                for line in explain.skipped_lines(result.skipped, result.skipped_total):
                    print(f"  skipped {line}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    # A full or read-only disk cannot record a failure: then what the files say is not news.
    unrecorded = status.unwritable(config)
    if unrecorded:
        print(f"warning: {unrecorded}; recent outcomes may be missing below (the server's dashboard,"
              " API and /healthz have them)", file=sys.stderr, flush=True)
    failing = bool(unrecorded)
    for course in _courses(config, args.courses):
        record = status.read(config, course.name)
        failing |= record.failing
        if args.json:
            print(json.dumps(record.to_json() | {"source": course.source, "status_error": unrecorded}), flush=True)
            continue
        print(f"{course.name} ({course.source})")
        print(f"  commit:      {record.commit or 'none yet'}")
        print(f"  last check:  {_when(record.last_check)}")
        print(f"  last change: {_when(record.last_change)}")
        if record.last_error:
            print(f"  last error:  {record.last_error} ({_when(record.last_error_at)});"
                  f" {explain.what_students_get(record.commit, record.last_change)}")
        for line in explain.skipped_lines(record.skipped, record.skipped_total):
            print(f"  skipped:     {line}")
    return EXIT_FAILED if failing else EXIT_OK


def cmd_link(config: Config, args: argparse.Namespace) -> int:
    config.course(args.course)
    print(link_in_course(config, args.course, args.path, args.hub))
    return EXIT_OK


def cmd_hub_config(config: Config, args: argparse.Namespace) -> int:
    print(hubconfig.render(config, external=args.external), end="")
    return EXIT_OK


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    from connectors import SourceError

    failed = False
    print(f"{config.path}: configuration is valid ({len(config.courses)} courses)")
    for course in _courses(config, args.courses):
        try:
            with course.connector() as connector:
                print(f"{course.name}: ok ({connector.check()})")
        except SourceError as error:
            failed = True
            print(f"{course.name}: FAILED: {error}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from .server.app import serve
    from .server.auth import make_auth

    make_auth(config)  # a refused auth setting stops here, before any link is printed
    print(f"f2git {__version__} serving {len(config.courses)} course(s) at {config.server.public_url}", flush=True)
    for name in config.courses:
        url = git_url(config, name)
        print(f"\n  {name}\n    git URL:           {url}\n    nbgitpuller link:  {course_link(config, name)}"
              f"\n    clone:             git clone --depth 1 {url}", flush=True)
    print(f"\n  dashboard:           {config.server.public_url}/\n", flush=True)
    serve(config)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="f2git", description=__doc__)
    top.add_argument("--config", help="config file (default: $F2GIT_CONFIG, else config/f2git.toml)")
    top.add_argument("-v", "--verbose", action="store_true", help="log more")
    top.add_argument("--version", action="version", version=f"f2git {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = sub.add_parser("sync", help="sync courses now (all when none named)")
    sync.add_argument("courses", nargs="*", metavar="COURSE")
    sync.add_argument("--json", action="store_true", help="one JSON object per course per line")
    sync.add_argument("--allow-mass-delete", action="store_true",
                      help="allow a sync that deletes more than half of the files")
    sync.set_defaults(run=cmd_sync)

    serve = sub.add_parser("serve", help="the server and the scheduler")
    serve.set_defaults(run=cmd_serve)

    stat = sub.add_parser("status", help="last check, last change, commit, last error")
    stat.add_argument("courses", nargs="*", metavar="COURSE")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(run=cmd_status)

    link = sub.add_parser("link", help="print the nbgitpuller link of a course")
    link.add_argument("course", metavar="COURSE")
    link.add_argument("--path", help="a file in the course to open after the pull")
    link.add_argument("--hub", help="JupyterHub URL (default: [hub] url)")
    link.set_defaults(run=cmd_link)

    hub = sub.add_parser("hub-config", help="print what a hub admin pastes into jupyterhub_config.py")
    hub.add_argument("--external", action="store_true",
                     help="f2git runs on its own (another host or pod), not started by the hub")
    hub.set_defaults(run=cmd_hub_config)

    check = sub.add_parser("check", help="validate the config and try each source's credentials")
    check.add_argument("courses", nargs="*", metavar="COURSE")
    check.set_defaults(run=cmd_check)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet = logging.INFO if args.command == "serve" else logging.ERROR  # CLI results go to stdout
    logging.basicConfig(level=logging.DEBUG if args.verbose else quiet,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run is noise
    try:
        config = load(args.config)
        return args.run(config, args)
    except ConfigError as error:
        print(f"f2git: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
