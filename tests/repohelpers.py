"""Real folders and real git for end-to-end tests, in the style of nbgitpuller's own helpers.

- `SourceFolder`: the instructor's released files (a `source = "local"` course reads it).
- `Student`: a student's home folder that nbgitpuller's `GitPuller` pulls into, unmodified,
  with its default shallow clone (depth 1), exactly as the hub extension runs it.
- `git(...)`: run git and return its output.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from nbgitpuller import GitPuller

# Tests must not depend on the machine's git identity or config.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
    "LC_ALL": "C",
}


def isolated_git(monkeypatch) -> None:
    """Make every git in this test (nbgitpuller's too) ignore the machine's config."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(autouse=True)
def machine_git_config_ignored(monkeypatch):
    """Importing this fixture into a test module applies `isolated_git` to all its tests."""
    isolated_git(monkeypatch)


def git_environ(**extra: str) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **extra}


def git(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, input: bytes | None = None,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run git; on failure the assertion shows git's own words."""
    process = subprocess.run(["git", *map(str, args)], cwd=cwd, input=input, capture_output=True,
                             env=env or git_environ(), timeout=120)
    if check and process.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({process.returncode}):\n"
                             f"{process.stderr.decode(errors='replace')}")
    return process


class Folder:
    """A folder of text files addressed by relative POSIX paths."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, content: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text()

    def exists(self, relative: str) -> bool:
        return (self.path / relative).exists()

    def delete(self, relative: str) -> None:
        (self.path / relative).unlink()
        self._prune((self.path / relative).parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders emptied by a delete or move, as a file manager's move does."""
        while folder != self.path and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def files(self) -> dict[str, str]:
        """relative path -> content of every file, ignoring git's own folder."""
        found = {}
        for path in sorted(self.path.rglob("*")):
            relative = path.relative_to(self.path).as_posix()
            if path.is_file() and not relative.startswith(".git/") and relative != ".git":
                found[relative] = path.read_text()
        return found


class SourceFolder(Folder):
    """The instructor's side: every change gets a strictly newer mtime, as edits a second
    apart would (the local source versions files by mtime and size, and two writes within
    one clock tick could otherwise look unchanged)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._last_mtime_ns = 0

    def _touch(self, target: Path) -> None:
        mtime = max(time.time_ns(), self._last_mtime_ns + 1_000_000_000)
        self._last_mtime_ns = mtime
        os.utime(target, ns=(mtime, mtime))

    def write(self, relative: str, content: str) -> None:
        super().write(relative, content)
        self._touch(self.path / relative)

    def rename(self, old: str, new: str) -> None:
        """Rename or move (into another folder) a file, keeping its content."""
        target = self.path / new
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.path / old, target)
        self._touch(target)
        self._prune((self.path / old).parent)


class Student(Folder):
    """A student's copy of a course, pulled by nbgitpuller through f2git's git URL."""

    def __init__(self, git_url: str, path: str | os.PathLike, depth: int = 1, branch: str = "main"):
        self.git_url = git_url
        self.branch = branch  # the link's branch= (a pinned release/NAME)
        self.path = Path(path)  # created by the first pull (nbgitpuller clones into it)
        self.depth = depth  # nbgitpuller's default 1; 0 clones the whole history
        self.log: list[str] = []

    def click(self, backup: bool = False) -> list[str]:
        """One nbgitpuller link click: a new GitPuller per click, as the hub handler makes.
        `backup`: the "Backup and resync" button of nbgitpuller's merge error page.

        GitPuller runs git with os.environ: use `isolated_git` in the test."""
        puller = GitPuller(self.git_url, str(self.path), branch=self.branch, depth=self.depth, backup=backup)
        lines: list[str] = []
        try:
            lines.extend(puller.pull())
        finally:  # a failed click's lines too: what the student's page showed
            self.log.extend(lines)
        return lines

    def is_shallow(self) -> bool:
        out = git("rev-parse", "--is-shallow-repository", cwd=self.path).stdout
        return out.strip() == b"true"

    def upstream_files(self) -> set[str]:
        """Files in the last fetched snapshot (origin/main)."""
        out = git("ls-tree", "-r", "--name-only", "-z", "origin/main", cwd=self.path).stdout
        return {p for p in out.decode().split("\0") if p}
