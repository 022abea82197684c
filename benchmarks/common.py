"""Shared pieces of the benchmarks: generated courses, a real `f2git serve`, timing."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def generate_course(root: Path, files: int, total_bytes: int, seed: int = 0) -> None:
    """`files` files in nested folders, `total_bytes` in all, half of it incompressible."""
    size = max(total_bytes // files, 1)
    for i in range(files):
        path = root / f"unit{i % 12:02d}" / f"part{i % 7}" / f"file{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        half = size // 2
        text = (f"seed {seed} file {i} " * (half // 16 + 1))[:half].encode()
        path.write_bytes(text + os.urandom(size - half))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(folder: Path, source: Path, port: int, **server: object) -> Path:
    extra = "".join(f"{key} = {value!r}\n" for key, value in server.items())
    path = folder / "f2git.toml"
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\ndata_dir = "data"\n{extra}'
                    f'[courses.bench]\nsource = "local"\npath = "{source}"\nschedule = 0\n')
    return path


@contextlib.contextmanager
def running_server(config: Path, port: int) -> Iterator[subprocess.Popen]:
    """`f2git serve` in a subprocess, ready when /healthz answers; stopped on exit."""
    process = subprocess.Popen([sys.executable, "-m", "f2git.cli", "--config", str(config), "serve"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("f2git serve did not start")
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    sys.stdout.flush()
