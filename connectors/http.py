"""One file on a web server, or an archive of a course's files that is unpacked.

Each list() is one conditional GET: a 304 means nothing changed and nothing is
downloaded. A 200 streams the body into the scratch dir (its length checked), from
where open() reads the file or the archive's members.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any, BinaryIO, Mapping
from urllib.parse import unquote, urlsplit

import requests

from . import _archive
from ._archive import ARCHIVE_SUFFIXES
from ._http import BodyStream, SessionConnector, SourceSession, where
from .base import Connector, Entry, Listing, SourceError

ARCHIVE_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip",
                 "application/x-tar", "application/x-gtar", "application/x-compressed-tar"}
HTML_TYPES = {"text/html", "application/xhtml+xml"}
CHUNK = 1024 * 1024


@dataclass
class HttpOptions:
    url: str = ""
    extract: bool | None = None  # None: unpack when the name, Content-Type or content says archive

    def validate(self) -> None:
        if not self.url:
            raise ValueError("missing key 'url'")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"key 'url': expected an http:// or https:// URL, got {where(self.url)!r}")


class HttpConnector(SessionConnector, Connector):
    source = "http"
    label = "web server"
    Options = HttpOptions

    @classmethod
    def describe(cls, options: HttpOptions) -> str:
        return where(options.url)

    max_download = 2 * 1024**3  # bytes: a body larger than this fails the sync instead of filling the disk
    limits = _archive.Limits()

    def __init__(self, options: HttpOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self._download_dir: str | None = None

    def list(self, state: Mapping[str, Any]) -> Listing:
        url = self.options.url
        same_source = state.get("url") == url and state.get("extract") == self.options.extract
        headers = {}
        if same_source and state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if same_source and state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        response = self.session.request("GET", url, ok=(200, 304), stream=True, headers=headers)
        if response.status_code == 304:
            response.close()
            return Listing(unchanged=True, state=dict(state))
        new_state = {"url": url, "extract": self.options.extract,
                     "etag": response.headers.get("ETag", ""),
                     "last_modified": response.headers.get("Last-Modified", "")}
        name = file_name(response)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in HTML_TYPES and not name.lower().endswith((".html", ".htm")):
            response.close()
            raise self.session.fail(f"answered with an HTML page instead of a file at {where(response.url)}"
                                    " (an error or login page? check the URL)")
        folder = tempfile.mkdtemp(prefix="download-", dir=self.scratch_dir())
        try:
            body, digest, size = self._save(response, folder)
            listing = Listing(state=new_state)
            if self._is_archive(body, name, content_type):
                listing.entries, listing.skipped = _archive.list_archive(
                    body, label=f"{self.label}: {name}", limits=self.limits, work_dir=folder)
            else:
                if new_state["etag"]:
                    version = f"etag:{new_state['etag']}"
                elif new_state["last_modified"]:
                    version = f"last-modified:{new_state['last_modified']}:{size}"
                else:
                    version = f"sha256:{digest}"
                listing.entries = [Entry(name, size, version, ref=body)]
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Only the newest download is kept: entries of older listings are stale anyway.
        if self._download_dir:
            shutil.rmtree(self._download_dir, ignore_errors=True)
        self._download_dir = folder
        return listing

    def _save(self, response: requests.Response, folder: str) -> tuple[str, str, int]:
        path = os.path.join(folder, "body")
        digest = hashlib.sha256()
        size = 0
        with BodyStream(response, self.session) as body, open(path, "wb") as out:
            while chunk := body.read(CHUNK):
                size += len(chunk)
                if size > self.max_download:
                    raise self.session.fail(f"{where(response.url)} is larger than {self.max_download} bytes")
                digest.update(chunk)
                out.write(chunk)
        return path, digest.hexdigest(), size

    def _is_archive(self, path: str, name: str, content_type: str) -> bool:
        if self.options.extract is not None:
            if self.options.extract and _archive.archive_kind(path) is None:
                raise SourceError(f"{self.label}: extract = true, but {name} is not a zip or tar archive")
            return self.options.extract
        if name.lower().endswith(ARCHIVE_SUFFIXES) or content_type in ARCHIVE_TYPES:
            return True  # list_archive() names a damaged one
        # A name like "slides.docx" (a zip inside) is a file; only a bare name is sniffed.
        return "." not in name and _archive.archive_kind(path) is not None

    def make_session(self) -> SourceSession:
        return SourceSession(self.label, self.options.url)

    def close(self) -> None:
        self._download_dir = None
        super().close()

    def open(self, entry: Entry) -> BinaryIO:
        if _archive.is_member(entry):
            return _archive.open_member(entry)
        try:
            return open(entry.ref, "rb")
        except OSError:
            raise SourceError(f"{self.label}: {entry.path} is gone from the download; list again") from None


def file_name(response: requests.Response) -> str:
    """Content-Disposition's filename, else the URL's last path segment, decoded; one segment only."""
    name = ""
    disposition = response.headers.get("Content-Disposition")
    if disposition:
        message = Message()
        message["Content-Disposition"] = disposition
        values = [value for key, value in (message.get_params(header="content-disposition") or [])[1:]
                  if key == "filename"]
        extended = [value for value in values if isinstance(value, tuple)]  # RFC 6266: filename* wins
        name = collapse_rfc2231_value((extended or values or [""])[0])
    if not name:
        name = unquote(urlsplit(response.url).path.rstrip("/").rsplit("/", 1)[-1])
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name not in ("", ".", "..") else "download"
