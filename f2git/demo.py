"""`make run`: f2git serving the demo course, and a local JupyterLab to click its link in.

    python -m f2git.demo [--config config/demo.toml] [--port 8765] [--jupyter-port 8888]

Two processes, started and stopped together: `f2git serve` and a jupyter-server with
JupyterLab and nbgitpuller (no hub), bound to 127.0.0.1 and protected by a fresh token. The
jupyter-server answers the hub's `/hub/user-redirect/…` paths too (this module is also its
server extension), so the nbgitpuller links f2git prints and the dashboard builds work
unchanged. Ctrl-C (or SIGTERM) stops both.

Students' files land in `<data_dir>/../demo-student/` (git-ignored `var/`).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from .cli import busy_port_message, free_port_after, port_in_use, use_port
from .console import EXIT_USAGE, say
from .config import ConfigError, load
from .links import DEMO_TOKEN_ENV, course_link, with_token

HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # s: a first JupyterLab start builds its caches


# -- the jupyter-server extension: hub-style links on a plain jupyter-server ----------------------

def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "f2git.demo"}]


def _load_jupyter_server_extension(serverapp) -> None:
    import tornado.web
    from jupyter_server.utils import url_path_join

    base = serverapp.base_url

    class UserRedirect(tornado.web.RequestHandler):
        """`/hub/user-redirect/<path>` → `/<path>`: what a hub does for its user's server."""

        def get(self, path: str) -> None:
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(url_path_join(base, path) + query)

    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, r"hub/user-redirect/(.*)"), UserRedirect)])


# -- the runner ---------------------------------------------------------------------------------

def _die_with_us() -> list[str]:
    """A child that must not outlive the runner, even after SIGKILL."""
    return ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def start_jupyter(root: Path, port: int, token: str, work: Path) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    (work / "config").mkdir(parents=True, exist_ok=True)
    # an own config dir: the user's own Jupyter settings neither break nor see the demo
    (work / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"f2git.demo": True, "nbgitpuller": True, "jupyterlab": True}}}))
    (work / "config" / "labconfig").mkdir(exist_ok=True)
    # no "get notified about Jupyter news?" prompt over the course: a demo asks no questions
    (work / "config" / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config"), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTER_TOKEN": token}
    command = [*_die_with_us(), sys.executable, "-m", "jupyter_server", f"--ServerApp.ip={HOST}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={root}", "--ServerApp.default_url=/lab"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(work / "jupyter.log", "ab")
    try:
        # its own session: the terminal's Ctrl-C reaches the runner, which stops it with SIGTERM
        # (on SIGINT jupyter-server would ask "Shutdown this Jupyter server (y/[n])?")
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def stop(process: subprocess.Popen | None, signum: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f2git.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/demo.toml")
    parser.add_argument("--port", type=int, help="f2git's port (default: [server] port)")
    parser.add_argument("--jupyter-port", type=int, default=8888, help="JupyterLab's port")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as error:
        for line in error.errors:
            say(f"f2git: {line}", file=sys.stderr)
        return EXIT_USAGE
    if args.port:
        use_port(config, args.port)
    port = config.server.port
    busy = [(port, busy_port_message(port))] if port_in_use(HOST, port) else []
    if port_in_use(HOST, args.jupyter_port):
        free = free_port_after(HOST, args.jupyter_port) or args.jupyter_port + 1
        busy.append((args.jupyter_port, f"port {args.jupyter_port} is already in use (another Jupyter?): pick"
                     f" another for the demo's JupyterLab, e.g. the free port {free}, with"
                     f" `make run JUPYTER_PORT={free}`"))
    for _, message in busy:
        say(f"f2git: {message}", file=sys.stderr)
    if busy:
        return EXIT_USAGE

    work = config.server.data_dir.parent / "demo-jupyter"
    token = secrets.token_urlsafe(24)
    jupyter_url = f"http://{HOST}:{args.jupyter_port}"
    jupyter = serve = None
    stopping: list[int] = []

    def on_signal(signum, frame) -> None:
        stopping.append(signum)

    old = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        jupyter = start_jupyter(config.server.data_dir.parent / "demo-student", args.jupyter_port, token, work)
        serve = subprocess.Popen([*_die_with_us(), sys.executable, "-m", "f2git.cli", "--config", args.config,
                                  "serve", "--port", str(port), "--hub", jupyter_url],
                                 env={**os.environ, DEMO_TOKEN_ENV: token})  # its printed links open as they are
        f2git_url = config.server.public_url
        deadline = time.monotonic() + START_TIMEOUT
        ready = {"f2git": False, "JupyterLab": False}
        while not all(ready.values()) and not stopping:
            for name, process in (("f2git", serve), ("JupyterLab", jupyter)):
                if process.poll() is not None:
                    say(f"f2git demo: {name} exited ({process.returncode})"
                        + (f"; see {work / 'jupyter.log'}" if process is jupyter else ""), file=sys.stderr)
                    return process.returncode or 1
            ready["f2git"] = ready["f2git"] or _answers(f"{f2git_url}/healthz")
            ready["JupyterLab"] = ready["JupyterLab"] or _answers(f"{jupyter_url}/api/status?{urlencode({'token': token})}")
            if time.monotonic() > deadline:
                say(f"f2git demo: not ready within {START_TIMEOUT:g}s: {ready}", file=sys.stderr)
                return 1
            time.sleep(0.2)  # polling other processes' ports: there is no event to wait on
        if not stopping:
            for name in config.courses:
                link = course_link(config, name, hub_url=jupyter_url)
                say(f"  JupyterLab (local, no hub) for {name}: open this link, it pulls the course and opens it:",
                    f"    {with_token(link, token)}", "")
            say("  Ctrl-C stops f2git and JupyterLab.", "")
        while not stopping and serve.poll() is None and jupyter.poll() is None:
            time.sleep(0.2)  # signals set `stopping`; a child's exit ends the demo too
        return 0 if stopping else 1
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        stop(serve, signal.SIGINT)
        stop(jupyter)


if __name__ == "__main__":
    sys.exit(main())
