"""Shared pieces of the benchmarks: generated courses, timing, tables. (A real `f2git serve`: tests/serveprocess.py.)"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def generate_course(root: Path, files: int, total_bytes: int, seed: int = 0) -> None:
    """`files` files in nested folders, `total_bytes` in all, half of it incompressible."""
    size = max(total_bytes // files, 1)
    for i in range(files):
        path = root / f"unit{i % 12:02d}" / f"part{i % 7}" / f"file{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        half = size // 2
        text = (f"seed {seed} file {i} " * (half // 16 + 1))[:half].encode()
        path.write_bytes(text + os.urandom(size - half))


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
