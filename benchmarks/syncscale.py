"""Sync scaling (issue 14 items 5 and 6): 3k and 30k files and one 1 GiB file, local source.

For each course: the first sync, a re-sync with nothing changed and a re-sync with one file
changed; wall time and peak RSS (the largest process of the run: Python or a git child),
beside what git alone costs on the same tree (`cp` + `git add` + `git commit`, and
`git status` for the no-change case).

    python -m benchmarks syncscale                # full: 3k, 30k files, 1 GiB (a few minutes)
    F2GIT_BENCH_QUICK=1 python -m benchmarks syncscale   # small sizes, for development
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.serveprocess import ServeProcess, write_config

from .common import generate_course, table

FULL = {"files": (3_000, 30_000), "big": 1 << 30}
QUICK = {"files": (300, 3_000), "big": 64 << 20}
BYTES_PER_FILE = 2048
TINY = 11  # the small course the issue compares a big one with

# One sync (or one listing of the source) in a fresh interpreter: the figures are of that
# call alone, without interpreter start-up and imports.
DRIVER = """
import json, resource, sys, time
from f2git.config import load
from f2git.snapshot import sync_course
config = load(sys.argv[1])
course = config.courses["bench"]
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
started, used = time.perf_counter(), cpu()
if sys.argv[2] == "list":
    with course.connector() as source:
        source.list({})
    answer = {"ok": True}
else:
    result = sync_course(config, course, remember=False)  # as `f2git sync` runs it
    answer = {"ok": result.ok, "error": result.error, "modified": result.modified, "changed": result.changed}
print(json.dumps({**answer, "seconds": time.perf_counter() - started, "cpu": cpu() - used}))
"""
# Re-syncs inside one long-running process, as `f2git serve` runs them: the first sync lists
# the whole folder; the two measured after it (no change, then one file changed) use the
# change journal and what the engine kept (issue 14.5).
SERVER_DRIVER = """
import json, os, resource, sys, time
from f2git.config import load
from f2git.snapshot import sync_course
config = load(sys.argv[1])
course = config.courses["bench"]
changed = sys.argv[2]
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
def timed(expect):
    started, used = time.perf_counter(), cpu()
    result = sync_course(config, course)
    assert result.ok and result.modified == expect, (result.error, result.modified)
    return [time.perf_counter() - started, cpu() - used]
assert sync_course(config, course).ok
same = timed(0)
size = os.path.getsize(changed)
with open(changed, "r+b") as handle:
    handle.seek(max(0, size - 1024))
    handle.write(os.urandom(min(size, 1024)))
info = os.stat(changed)
os.utime(changed, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
one = timed(1)
print(json.dumps({"same": same, "one": one, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@example.org", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.org", "LC_ALL": "C"}


def run_alone(command: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float, int, bytes]:
    """Run `command`: (wall s, CPU s of it and its children, peak RSS MiB of its largest process, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    out = process.stdout.read()
    err = process.stderr.read()
    _, code, usage = os.wait4(process.pid, 0)  # wait4's usage covers the child and its reaped children
    process.returncode = os.waitstatus_to_exitcode(code)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {err.decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, out


def f2git(config_path: Path, what: str = "sync") -> tuple[float, float, int, dict]:
    _, _, peak, out = run_alone([sys.executable, "-c", DRIVER, str(config_path), what])
    result = json.loads(out)
    assert result["ok"], result["error"]
    return result["seconds"], result["cpu"], peak, result


def git_alone(script: str, tree: Path) -> tuple[float, float, int, None]:
    seconds, cpu, peak, _ = run_alone(["sh", "-ec", script], env={**os.environ, **GIT_ENV}, cwd=tree)
    return seconds, cpu, peak, None


def write_big(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 1 << 20
    with open(path, "wb") as handle:
        for i in range(size // chunk):
            # Half text, half random: a data file compresses somewhat, not entirely.
            half = (f"seed {seed} chunk {i} " * (chunk // 32 + 1)).encode()[:chunk // 2]
            handle.write(half + os.urandom(chunk - len(half)))


def touch_newer(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def one_course(work: Path, label: str, make_source, server: dict | None = None) -> list[tuple[str, str]]:
    source, plain = work / "source", work / "plain"
    changed = make_source(source)
    config = write_config(work / "f2git.toml", {"data_dir": "data"},
                          {"bench": {"source": "local", "path": str(source), "schedule": 0,
                                     "max_file_size": 4 << 30}})
    first = f2git(config)
    git_first = git_alone(f"cp -r {source} {plain} && cd {plain} && git init -q && git add -A"
                          " && git commit -q -m first", work)
    same = f2git(config)
    assert not same[3]["changed"], same
    git_same = git_alone("git status --porcelain >/dev/null", plain)
    listing = f2git(config, "list")
    rewrite_tail(changed)
    one = f2git(config)
    assert one[3]["modified"] == 1, one
    relative = changed.relative_to(source)
    git_one = git_alone(f"cp {changed} {plain / relative} && git add -A && git commit -q -m one", plain)
    rows = [(f"{label}: {name}", figures(ours, theirs)) for name, ours, theirs in (
        ("first sync", first, git_first), ("re-sync, no change", same, git_same),
        ("re-sync, one file changed", one, git_one))]
    rows.append((f"{label}: listing the source alone", figures(listing, None)))
    if server is not None:
        _, _, _, out = run_alone([sys.executable, "-c", SERVER_DRIVER, str(config), str(changed)])
        kept = json.loads(out)
        for name in ("same", "one"):
            seconds, used = kept[name]
            server[(label, name)] = seconds, used
            what = "no change" if name == "same" else "one file changed"
            rows.append((f"{label}: re-sync in the server, {what}",
                         figures((seconds, used, kept["rss"]), None)))
    return rows


def clicks_after_edits(work: Path, count: int, rounds: int = 5) -> tuple[float, float]:
    """Through a real `f2git serve` (refresh_ttl 0): median latency of a click (`git ls-remote`)
    right after one file changed, and of one with nothing changed; the first click is not counted."""
    source = work / "source"
    generate_course(source, count, count * BYTES_PER_FILE)
    config = write_config(work / "serve.toml", {"data_dir": str(work / "data"), "refresh_ttl": 0, "click_window": 0},
                          {"bench": {"source": "local", "path": str(source), "schedule": 0}})
    files = sorted(source.rglob("*.txt"))
    with ServeProcess(config) as server:
        def click() -> float:
            started = time.perf_counter()
            subprocess.run(["git", "ls-remote", server.git_url("bench"), "main"], check=True, capture_output=True)
            return time.perf_counter() - started
        click()  # lists the whole folder once
        edited = []
        for number in range(rounds):
            rewrite_tail(files[number * 7 % len(files)])
            edited.append(click())
        unchanged = [click() for _ in range(rounds)]
    return sorted(edited)[rounds // 2], sorted(unchanged)[rounds // 2]


def figures(ours, theirs) -> str:
    text = f"{ours[0]:7.3f} s {ours[1]:7.3f} s {ours[2]:5d} MiB"
    if theirs is not None:
        text += (f" | {theirs[0]:7.3f} s {theirs[1]:7.3f} s {theirs[2]:5d} MiB"
                 f" | {ours[0] / max(theirs[0], 1e-3):5.2f} {ours[1] / max(theirs[1], 1e-3):5.2f}")
    return text


def rewrite_tail(path: Path) -> None:
    """Change the last KiB of a file in place (size kept, mtime moved on), as an edit would."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(max(0, size - 1024))
        handle.write(os.urandom(min(size, 1024)))
    touch_newer(path)


def files_course(count: int):
    def make(source: Path) -> Path:
        generate_course(source, count, count * BYTES_PER_FILE)
        return next(source.rglob("*.txt"))
    return make


def big_course(size: int):
    def make(source: Path) -> Path:
        write_big(source / "data" / "big.bin", size, 0)
        (source / "README.md").write_text("# one big file\n")
        return source / "data" / "big.bin"
    return make


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = os.environ.get("F2GIT_BENCH_QUICK") == "1" or "quick" in argv
    sizes = QUICK if quick else FULL
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="f2git-syncscale-", dir=os.environ.get("F2GIT_BENCH_DIR")) as folder:
        work = Path(folder)
        server: dict = {}
        for count in (TINY, *sizes["files"]):
            (work / str(count)).mkdir()
            rows += one_course(work / str(count), f"{count:>6} files", files_course(count), server)
            shutil.rmtree(work / str(count))
        for count in (TINY, max(sizes["files"])):
            (work / f"serve{count}").mkdir()
            edited, unchanged = clicks_after_edits(work / f"serve{count}", count)
            rows.append((f"{count:>6} files: a click through f2git serve (median)",
                         f"{edited:7.3f} s right after one file changed, {unchanged:7.3f} s with nothing changed"))
            shutil.rmtree(work / f"serve{count}")
        # Issue 14.5's target: a one-file re-sync of the largest course within 2x of the tiny one's.
        tiny, large = f"{TINY:>6} files", f"{max(sizes['files']):>6} files"
        for name, what in (("same", "no change"), ("one", "one file changed")):
            ratio = [server[(large, name)][i] / max(server[(tiny, name)][i], 1e-3) for i in (0, 1)]
            rows.append((f"server re-sync, {what}: {large.strip()} / {TINY} files",
                         f"{ratio[0]:5.2f}x wall, {ratio[1]:5.2f}x CPU"))
        (work / "big").mkdir()
        rows += one_course(work / "big", f"1 file of {sizes['big'] >> 20} MiB", big_course(sizes["big"]))
    rows.insert(0, ("", "f2git: wall, CPU, peak RSS      | git alone: wall, CPU, peak RSS  | ratio wall, CPU"))
    table("Sync scaling, local source (peak RSS of the largest process; git alone = cp + git add + git commit,"
          " git status for no change)", rows)


if __name__ == "__main__":
    main()
