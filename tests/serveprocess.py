"""A real `f2git serve` in a subprocess on 127.0.0.1, for fault, load and concurrency runs.

    with ServeProcess(config_path) as server:      # config's [server] port is ignored: a free one is used
        server.url, server.git_url("cs101")
        server.post("/api/courses/cs101/refresh")
        server.kill()                              # SIGKILL, as a crash or the OOM killer would
        rss(server.pid), open_fds(server.pid), descendants(server.pid)   # from /proc

The process gets its own port through a copy of the config; stdout and stderr go to files
the test can read (`server.output()`), so a full pipe never blocks the server.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(path: Path, server: dict, courses: dict[str, dict], tables: dict[str, dict] | None = None) -> Path:
    """`tables`: other top-level tables ([hub], [lti]); a list of tables in one is an array of tables."""
    server = {"click_window": 0, **server}  # as in serverhelpers.config_factory: each click its own
    lines = ["[server]"] + [f"{key} = {toml_value(value)}" for key, value in server.items()]
    for name, table in (tables or {}).items():
        arrays = {key: value for key, value in table.items() if isinstance(value, list) and value
                  and all(isinstance(item, dict) for item in value)}
        lines += ["", f"[{name}]"] + [f"{key} = {toml_value(value)}" for key, value in table.items() if key not in arrays]
        for key, items in arrays.items():
            for item in items:
                lines += ["", f"[[{name}.{key}]]"] + [f"{k} = {toml_value(v)}" for k, v in item.items()]
    for name, table in courses.items():
        lines += ["", f"[courses.{name}]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren…), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def rss(pid: int) -> int:
    """Resident memory of a process in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class ServeProcess:
    def __init__(self, config_path: Path, *, env: dict[str, str] | None = None, port: int | None = None,
                 preexec_fn: Any = None):
        """`preexec_fn` runs in the child before f2git starts (e.g. to lower its rlimits)."""
        self.preexec_fn = preexec_fn
        self.port = port or free_port()
        data = tomllib.loads(Path(config_path).read_text())
        data.setdefault("server", {}).update(port=self.port, host="127.0.0.1",
                                              public_url=f"http://127.0.0.1:{self.port}")
        base = Path(config_path).resolve().parent
        if "data_dir" in data["server"]:  # the copy lives next to the original: relative paths still hold
            data["server"]["data_dir"] = str((base / data["server"]["data_dir"]).resolve())
        others = {name: table for name, table in data.items() if name not in ("server", "courses")}
        self.config_path = write_config(base / f".serve-{self.port}.toml", data["server"], data.get("courses", {}),
                                        others)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.log_path = base / f".serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def git_url(self, course: str) -> str:
        return f"{self.url}/git/{course}"

    def start(self, timeout: float = 30) -> "ServeProcess":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "f2git.cli", "--config", str(self.config_path), "serve"],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                                        preexec_fn=self.preexec_fn)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"f2git serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                # one connection at a time: a server capped at one per address must see no probe beside it
                if self.request("GET", "/healthz", timeout=5)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)  # polling a port that is not yet bound: there is no event to await
        self.stop()
        raise RuntimeError(f"f2git serve did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 120) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def post(self, path: str, data: Any = None, timeout: float = 120) -> tuple[int, Any]:
        status, body = self.request("POST", path, json.dumps(data or {}).encode(), timeout=timeout)
        return status, json.loads(body)

    # -- ending it ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as after a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        self.config_path.unlink(missing_ok=True)
