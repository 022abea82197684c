"""`f2git` command line. Exit status: 0 all fine, 1 a course failed, 2 usage or config error."""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import socket
import sys
import time
from urllib.parse import urlencode

from connectors.base import counted

from . import __version__, envfile, explain, hubconfig, release_cli, status
from .console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, safe, say
from .config import Config, ConfigError, is_http_url, load
from .links import DEMO_PARAM, DEMO_TOKEN_ENV, course_link, git_url, link_in_course, with_token

class SafeFormatter(logging.Formatter):
    """Log lines (serve logs to the terminal too) with control characters escaped, line by line."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(safe(line) for line in super().format(record).split("\n"))


def _names(config: Config, names: list[str]) -> list[str]:
    """The courses a command is about: those named (each must exist), else all, broken ones too."""
    for name in names:
        if name not in config.courses and name not in config.broken:
            config.course(name)  # raises "no course named …"
    return names or config.course_names


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    # time.strftime follows TZ exactly as the C library reads it (also ":/etc/localtime",
    # "UTC+14", or an unknown zone, which it takes as UTC)
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def cmd_sync(config: Config, args: argparse.Namespace) -> int:
    from .progress import reporter
    from .snapshot import sync_course

    failed = False
    with reporter(quiet=args.json) as progress:
        for name in _names(config, args.courses):
            if name in config.broken:
                failed = True
                if args.json:
                    print(json.dumps({"course": name, "ok": False, "error": config.broken[name]}), flush=True)
                else:
                    say(f"{name}: FAILED: {config.broken[name]}")
                continue
            course = config.courses[name]
            result = sync_course(config, course, allow_mass_delete=args.allow_mass_delete, progress=progress,
                                 remember=False)  # this process syncs once and exits
            failed |= not result.ok
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            elif not result.ok:
                head = status.read(config, name).commit
                say(f"{name}: FAILED: {result.error} ({explain.what_students_get(head)})")
            else:
                what = (f"+{result.added} ~{result.modified} -{result.deleted}, commit {result.commit[:10]}"
                        if result.changed else "no change")
                say(f"{name}: {what}")
                for line in explain.skipped_lines(result.skipped, result.skipped_total):
                    say(f"  skipped {line}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    # A full or read-only disk cannot record a failure: then what the files say is not news.
    unrecorded = status.unwritable(config)
    if unrecorded:
        say(f"warning: {unrecorded}; recent outcomes may be missing below (the server's dashboard,"
            " API and /healthz have them)", file=sys.stderr)
    failing = bool(unrecorded)
    unsaved = status.backup_unwritable(config)
    if unsaved:
        say(f"warning: backup_dir: {unsaved}; no course's history is backed up", file=sys.stderr)
        failing = True
    for name in _names(config, args.courses):
        record = status.read(config, name)
        broken = config.broken.get(name)
        failing |= record.failing or broken is not None or record.backup_error is not None
        source = config.courses[name].source if name in config.courses else None
        if args.json:
            extra = ({"config_error": broken} if broken else {}) | ({"backup_dir_error": unsaved} if unsaved else {})
            print(json.dumps(record.to_json() | {"source": source, "status_error": unrecorded} | extra), flush=True)
            continue
        say(f"{name} ({source or 'configuration broken'})")
        if broken:
            say(f"  config error: {broken}")
        say(f"  commit:      {record.commit or 'none yet'}")
        say(f"  last check:  {_when(record.last_check)}")
        say(f"  last change: {_when(record.last_change)}")
        if record.last_error:
            say(f"  last error:  {record.last_error} ({_when(record.last_error_at)});"
                f" {explain.what_students_get(record.commit, record.last_change)}")
        if record.backup_error:
            say(f"  backup:      FAILED: {record.backup_error}")
        for line in explain.skipped_lines(record.skipped, record.skipped_total):
            say(f"  skipped:     {line}")
    return EXIT_FAILED if failing else EXIT_OK


def hub_option(value: str | None) -> str | None:
    """`--hub`, which links are built on: an absolute http(s) URL, as [hub] url."""
    if value and not is_http_url(value):
        raise ConfigError(f"--hub: {value!r} is not an absolute http(s) URL (like https://hub.example.org)")
    return value


def cmd_link(config: Config, args: argparse.Namespace) -> int:
    hub_option(args.hub)
    _names(config, [args.course])  # a course whose secrets are missing here still has a link
    if args.door and args.hub:  # the door of a hub service is reached through that hub
        config.hub.url = args.hub.rstrip("/")
    print(link_in_course(config, args.course, args.path, args.hub, door=args.door, branch=args.branch))
    return EXIT_OK


def cmd_hub_config(config: Config, args: argparse.Namespace) -> int:
    print(hubconfig.render(config, external=args.external), end="")
    return EXIT_OK


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    from connectors import SourceError

    from .server.auth import make_auth

    problems = [config.broken[name] for name in _names(config, args.courses) if name in config.broken]
    if config.server.auth == "jupyterhub" and "JUPYTERHUB_API_URL" not in os.environ:
        say("note: auth = \"jupyterhub\": the hub gives f2git its API URL and token when it starts it")
    else:
        try:
            make_auth(config)  # what `serve` refuses, `check` refuses
        except ConfigError as error:
            problems += error.errors
    for problem in problems:
        say(problem)
    if config.server.backup_dir is None and any(not c.mirror for c in config.courses.values()):
        say("note: no [server] backup_dir: if data_dir is lost, a course without a mirror starts a new"
            " history and students' next click fails; see the README's Operations section")
    failed = bool(problems)
    if unsaved := status.backup_unwritable(config):
        failed = True
        say(f"backup_dir: FAILED: {unsaved}; every backup would fail")
    if not problems:
        count = len(config.courses)
        say(f"{config.path}: configuration is valid ({counted(count, 'course')})")
    if config.lti is not None:
        from .lti.check import check as check_lti

        for ok, line in check_lti(config.lti):
            failed |= not ok
            say(line)
    for name in _names(config, args.courses):
        if name in config.broken:
            continue
        try:
            with config.courses[name].connector() as connector:
                say(f"{name}: ok ({connector.check()})")
        except SourceError as error:
            failed = True
            say(f"{name}: FAILED: {error}")
    return EXIT_USAGE if problems else EXIT_FAILED if failed else EXIT_OK


def port_in_use(host: str, port: int) -> bool:
    """Whether `serve` could not listen there (tornado binds with SO_REUSEADDR, as here)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # the server names the bad host itself
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
    return False


def free_port_after(host: str, port: int) -> int | None:
    """The first port after `port` that nothing listens on (what the busy-port hint suggests)."""
    return next((p for p in range(port + 1, min(port + 101, 65536)) if not port_in_use(host, p)), None)


def busy_port_message(port: int, host: str = "127.0.0.1") -> str:
    free = free_port_after(host, port)
    hint = (f": pick another, e.g. the free port {free}, with `f2git serve --port {free}` or `make run PORT={free}`,"
            " or set [server] port") if free else ": pick another with `f2git serve --port N`, or set [server] port"
    return f"port {port} is already in use (another f2git or program listens there){hint}"


def use_port(config: Config, port: int) -> None:
    """Listen on `port`; a public_url derived from the port follows it."""
    derived = config.server.public_url == f"http://{config.server.host}:{config.server.port}"
    config.server.port = port
    if derived:
        config.server.public_url = f"http://{config.server.host}:{port}"


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from .server.app import serve
    from .server.auth import make_auth

    if args.port is not None:
        use_port(config, args.port)
    if hub_option(args.hub):
        config.hub.url = args.hub.rstrip("/")
    make_auth(config)  # a refused auth setting stops here, before any link is printed
    if port_in_use(config.server.host, config.server.port):
        say(f"f2git: {busy_port_message(config.server.port, config.server.host)}", file=sys.stderr)
        return EXIT_USAGE
    say(f"f2git {__version__} serving {counted(len(config.courses), 'course')} at {config.server.public_url}")
    for name in config.courses:
        url = git_url(config, name)
        link = with_token(course_link(config, name), os.environ.get(DEMO_TOKEN_ENV))  # `make run`: opens as it is
        say("", f"  {name}", f"    git URL:           {url}", f"    nbgitpuller link:  {link}",
            f"    clone:             git clone --depth 1 {url}")
    for name, error in config.broken.items():
        say("", f"  {name}: NOT SERVED: {error}")
    demo = os.environ.get(DEMO_TOKEN_ENV)  # `make run`: the dashboard then hands its browser the token
    say("", f"  dashboard:           {config.server.public_url}/"
        + (f"?{urlencode({DEMO_PARAM: demo})}" if demo else ""), "")
    try:
        serve(config)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        say(f"f2git: {busy_port_message(config.server.port, config.server.host)}", file=sys.stderr)  # taken meanwhile
        return EXIT_USAGE
    return EXIT_OK


COMMANDS = {
    # name: (one-line description, example)
    "sync": ("Sync courses from their sources now (all when none is named).",
             "f2git sync cs101 --json"),
    "serve": ("Serve the courses to students' git and run the scheduled refreshes.",
              "f2git serve --port 8777"),
    "status": ("Show each course's last check, last change, commit and last error.",
               "f2git status cs101"),
    "link": ("Print the nbgitpuller link of a course (or of one file in it).",
             "f2git link cs101 --path 'week 1/intro.ipynb'"),
    "hub-config": ("Print what a hub admin pastes into jupyterhub_config.py.",
                   "f2git hub-config >> /etc/jupyterhub/jupyterhub_config.py"),
    "check": ("Check the config (every error at once) and try each source's credentials.",
              "f2git --config config/f2git.toml check"),
    **release_cli.COMMANDS,
}


def parser() -> argparse.ArgumentParser:
    # --config and -v work before or after the command: the command's copies only set a
    # value when given (SUPPRESS), so they never hide one given before it.
    def common(default) -> argparse.ArgumentParser:  # a new one each time: parents share actions
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("--config", default=None if default else argparse.SUPPRESS,
                             help="config file (default: $F2GIT_CONFIG, else config/f2git.toml)")
        options.add_argument("--env-file", default=None if default else argparse.SUPPRESS,
                             help="read the secrets the config names from this file (mode 0600, NAME=value"
                                  f" lines; default: ${envfile.VARIABLE}); the environment wins")
        options.add_argument("-v", "--verbose", action="store_true",
                             default=False if default else argparse.SUPPRESS, help="log more")
        return options

    top = argparse.ArgumentParser(prog="f2git", description=__doc__, parents=[common(True)],
                                  epilog="Run `f2git COMMAND --help` for a command's options and an example.")
    top.add_argument("--version", action="version", version=f"f2git {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run) -> argparse.ArgumentParser:
        summary, example = COMMANDS[name]
        made = sub.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {example}",
                              parents=[common(False)], formatter_class=argparse.RawDescriptionHelpFormatter)
        made.set_defaults(run=run)
        return made

    sync = command("sync", cmd_sync)
    sync.add_argument("courses", nargs="*", metavar="COURSE")
    sync.add_argument("--json", action="store_true", help="one JSON object per course per line")
    sync.add_argument("--allow-mass-delete", action="store_true",
                      help="allow a sync that deletes more than half of the files")

    serve = command("serve", cmd_serve)
    serve.add_argument("--port", type=int, help="listen on this port instead of [server] port")
    serve.add_argument("--hub", help="links point to this JupyterHub (or jupyter-server) instead of [hub] url")

    stat = command("status", cmd_status)
    stat.add_argument("courses", nargs="*", metavar="COURSE")
    stat.add_argument("--json", action="store_true", help="one JSON object per course per line")

    link = command("link", cmd_link)
    link.add_argument("course", metavar="COURSE")
    link.add_argument("--path", help="a file in the course to open after the pull")
    link.add_argument("--hub", help="JupyterHub URL (default: [hub] url)")
    link.add_argument("--door", action="store_true",
                      help="print f2git's front-door link (/open/…), which tells students in words what is wrong"
                           " before it hands them to the hub, instead of the plain nbgitpuller link")
    link.add_argument("--branch", default="main", help="a pinned release, release/NAME (default: main)")

    hub = command("hub-config", cmd_hub_config)
    hub.add_argument("--external", action="store_true",
                     help="f2git runs on its own (another host or pod), not started by the hub")

    check = command("check", cmd_check)
    check.add_argument("courses", nargs="*", metavar="COURSE")
    release_cli.add_commands(command)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.umask(0o077)  # every file f2git or its git writes (repos, cache, state, backups) is the server user's alone
    quiet = logging.INFO if args.command == "serve" else logging.ERROR  # CLI results go to stdout
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else quiet, handlers=[handler])
    if not args.verbose:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run is noise
    try:
        envfile.apply(args.env_file or os.environ.get(envfile.VARIABLE), os.environ)
        config = load(args.config, strict=False)  # a broken course fails alone
        return args.run(config, args)
    except ConfigError as error:
        for line in error.errors:
            say(f"f2git: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "sync":  # a sync moves main last: an interrupted one published nothing
            say("f2git: interrupted; every course keeps its last snapshot (students get that one)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
