"""`--env-file` / $F2GIT_ENV_FILE: the secrets a config's `*_env` keys name, read from a private file.

Why a file: JupyterHub (5+) stores a managed service's `environment` in its database, in
plain text, so `f2git hub-config` passes the service only this file's path; the hub writes
the file (mode 0600) from its own environment when it starts. The format is the usual
`.env` one (`NAME=value`, `NAME='value'`, comments with `#`), read with python-dotenv.

A variable already set in the environment wins over the file (as with systemd and docker).
A file other users could read is refused: it holds every course's LMS credentials.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import MutableMapping

from dotenv import dotenv_values

from .config import ConfigError

VARIABLE = "F2GIT_ENV_FILE"


def read(path: str | os.PathLike[str]) -> dict[str, str]:
    """NAME -> value of an env file; ConfigError naming the file and what is wrong."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise ConfigError(f"env file {path}: cannot read it: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"env file {path}: not a regular file")
    if mode & 0o077:
        raise ConfigError(f"env file {path}: other users may read it (mode {stat.S_IMODE(mode):o}):"
                          f" it holds secrets; `chmod 600 {path}`")
    try:
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"env file {path}: cannot read it: {error}") from None
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:  # a line without "=": most likely a typo that would leave a secret unset
        raise ConfigError(f"env file {path}: no '=' after {', '.join(missing)}")
    return {name: value for name, value in values.items() if value is not None}


def apply(path: str | os.PathLike[str] | None, environ: MutableMapping[str, str]) -> None:
    """Add the file's variables that `environ` does not set yet (nothing when `path` is empty)."""
    if not path:
        return
    for name, value in read(path).items():
        environ.setdefault(name, value)
