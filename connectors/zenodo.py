"""A Zenodo record (or any InvenioRDM installation): its files, or the one archive it holds, unpacked.

`GET /api/records/<id>` answers the record with its files (`key`, `size`,
`checksum "md5:…"`, `links.content`/`links.self`); `/api/records/<id>/versions/latest`
redirects to the newest version. A published version's files never change, so the
checksum is a precise version token, and every download is checked against it.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Mapping
from urllib.parse import quote, urlsplit

from . import _archive
from ._archive import ARCHIVE_SUFFIXES
from ._http import SessionConnector, SourceSession, where
from .base import AuthError, Connector, Entry, Listing, SourceError

DEFAULT_URL = "https://zenodo.org"
_DOI = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?10\.\d{4,9}/zenodo\.(\d+)$", re.IGNORECASE)
_RECORD_PATH = re.compile(r"^/(?:api/)?records?/(\d+)(?:/.*)?$")


@dataclass
class ZenodoOptions:
    record: str = ""
    url: str = DEFAULT_URL
    latest: bool = True
    token_env: str = ""
    extract: bool | None = None  # None: unpack when the record is a single archive file

    def record_id(self) -> str:
        """The numeric id `record` names (id, DOI or record URL); ValueError naming the key."""
        raw = str(self.record).strip()
        if raw.isdigit():
            return raw
        if match := _DOI.match(raw):
            return match.group(1)
        parts = urlsplit(raw)
        if parts.scheme in ("http", "https") and (match := _RECORD_PATH.match(parts.path)):
            return match.group(1)
        raise ValueError(f"key 'record': {raw!r} is not a Zenodo record id, DOI (10.5281/zenodo.N)"
                         " or record URL (https://zenodo.org/records/N)")

    def validate(self) -> None:
        if not str(self.record).strip():
            raise ValueError("missing key 'record'")
        self.record_id()
        url = urlsplit(self.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"key 'url': {self.url!r} is not an http(s) URL")
        record = urlsplit(str(self.record).strip())
        is_record_url = record.scheme in ("http", "https") and _RECORD_PATH.match(record.path)
        if is_record_url and record.netloc.lower() != url.netloc.lower():
            if self.url.rstrip("/") != DEFAULT_URL:
                raise ValueError(f"key 'record': the record URL is on {record.netloc}, but key 'url'"
                                 f" is {self.url}")
            self.url = f"{record.scheme}://{record.netloc}"  # e.g. sandbox.zenodo.org
        self.url = self.url.rstrip("/")


def _date(value: Any) -> datetime | None:
    """An embargo date ("2026-03-01" or ISO date-time) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RecordFile:
    key: str
    size: int | None
    checksum: str
    url: str

    @property
    def md5(self) -> str | None:
        algorithm, _, value = self.checksum.partition(":")
        return value if algorithm.lower() == "md5" and value else None


class EmbargoedError(SourceError):
    """The record's files are under embargo; `next_release` is when it ends."""

    def __init__(self, message: str, next_release: datetime | None):
        super().__init__(message)
        self.next_release = next_release


class ZenodoConnector(SessionConnector, Connector):
    source = "zenodo"
    label = "Zenodo"
    Options = ZenodoOptions

    @classmethod
    def describe(cls, options: ZenodoOptions) -> str:
        return f"record {options.record}" + ("" if options.url == DEFAULT_URL else f" at {where(options.url)}")

    def __init__(self, options: ZenodoOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self._archive: tuple[str, list[Entry], list] | None = None  # (checksum, entries, skipped)

    @property
    def api(self) -> str:
        return f"{self.options.url.rstrip('/')}/api"

    def make_session(self) -> SourceSession:
        token = self.secret(self.options.token_env)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        session = SourceSession(self.label, self.options.url, headers=headers, secrets=(token,))
        session.session.headers["Accept"] = "application/json"
        return session

    # --- the record -----------------------------------------------------------------------

    def _get_record(self) -> dict:
        record_id = self.options.record_id()
        urls = [f"{self.api}/records/{record_id}"]
        if self.options.latest:
            urls.insert(0, f"{self.api}/records/{record_id}/versions/latest")
        for url in urls:
            data, response = self.session.get_json(url, ok=(200, 401, 403, 404, 410))
            if response.status_code == 404 and url != urls[-1]:
                continue  # a concept id: the record URL itself resolves it to the newest version
            if response.status_code != 200:
                raise self._record_error(record_id, response.status_code)
            if not isinstance(data, dict):
                raise self.session.fail(f"answered with unexpected JSON at {where(response.url)}")
            return data
        raise AssertionError("unreachable")

    def _record_error(self, record_id: str, status: int) -> SourceError:
        token_env = self.options.token_env
        name = f"record {record_id} on {self.options.url}"
        if status == 401:
            return self.session.fail(f"rejected the access token in {token_env} (401) for {name};"
                                     " create a new personal access token", AuthError)
        if status == 403:
            hint = (f"the token in {token_env} may not read it" if token_env else
                    "set token_env to a variable holding a personal access token of an account that may read it")
            return self.session.fail(f"{name} is restricted (403): {hint}", AuthError)
        if status == 410:
            return self.session.fail(f"{name} was deleted (410); point key 'record' at another record")
        hint = "" if token_env else "; a restricted record is also hidden without a token (token_env)"
        return self.session.fail(f"{name} was not found (404): check key 'record'{hint}")

    def _files(self, record: Mapping[str, Any]) -> list[RecordFile]:
        record_id = str(record.get("id") or self.options.record_id())
        files = record.get("files") or []  # left out when the caller may not read them
        declared: int | None = None
        if isinstance(files, dict):  # InvenioRDM: {"enabled", "entries": {key: file} | [file], "count"}
            declared = files.get("count") if isinstance(files.get("count"), int) else None
            files = files.get("entries") or []
            if isinstance(files, dict):
                files = list(files.values())
            if declared is not None and len(files) < declared:
                # The record carries only the first files: the files endpoint has them all.
                links = record.get("links") if isinstance(record.get("links"), dict) else {}
                files_url = links.get("files") or f"{self.api}/records/{record_id}/files"
                data, _ = self.session.get_json(files_url)
                files = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise self.session.fail(f"record {record_id}: unexpected 'files' in the API answer")
        if declared is not None and len(files) != declared:
            raise self.session.fail(f"record {record_id} lists {len(files)} of its {declared} files")
        result = []
        for item in files:
            key = item.get("key") or item.get("filename")
            if not isinstance(key, str) or not key:
                raise self.session.fail(f"record {record_id}: a file without a name")
            links = item.get("links") if isinstance(item.get("links"), dict) else {}
            url = next((link for link in (links.get("content"), links.get("self")) if isinstance(link, str) and link),
                       f"{self.api}/records/{record_id}/files/{quote(key)}/content")
            size = item.get("size", item.get("filesize"))
            result.append(RecordFile(key, size if isinstance(size, int) else None,
                                     str(item.get("checksum") or ""), url))
        return result

    def _access(self, record: Mapping[str, Any]) -> tuple[str, datetime | None]:
        """("open" | "embargoed" | "restricted" | …, embargo end) from either API shape."""
        access = record.get("access") if isinstance(record.get("access"), dict) else {}
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        status = str(access.get("status") or metadata.get("access_right") or "open").lower()
        embargo = access.get("embargo") if isinstance(access.get("embargo"), dict) else {}
        until = _date(embargo.get("until")) or _date(metadata.get("embargo_date"))
        return status, until

    # --- the connector --------------------------------------------------------------------

    def list(self, state: Mapping[str, Any]) -> Listing:
        record = self._get_record()
        record_id = str(record.get("id") or self.options.record_id())
        status, embargo_until = self._access(record)
        now = datetime.now(timezone.utc)
        files = self._files(record)
        if not files:
            raise self._no_files_error(record_id, status, embargo_until, now)
        listing = Listing(state={"record": record_id})
        if embargo_until and embargo_until > now:
            listing.next_release = embargo_until
        archive = self._single_archive(record_id, files)
        if archive is None:
            listing.entries = [Entry(f.key, f.size, f.checksum or f"record-{record_id}:{f.size}", ref=f)
                               for f in files]
            return listing
        listing.state["archive"] = archive.checksum
        if archive.checksum and state.get("record") == record_id and state.get("archive") == archive.checksum:
            listing.unchanged = True  # the same archive as last time: nothing to unpack
            return listing
        listing.entries, listing.skipped = self._unpack(record_id, archive)
        return listing

    def _no_files_error(self, record_id: str, status: str, until: datetime | None, now: datetime) -> SourceError:
        name = f"Zenodo record {record_id}"
        token_hint = ("set token_env to a personal access token of an account with access"
                      if not self.options.token_env else f"the token in {self.options.token_env} has no access")
        if status == "embargoed" and until:
            day = until.date().isoformat()
            if until > now:
                return EmbargoedError(f"{name} is under embargo until {day}: its files are published then"
                                      f" and f2git picks them up after that (to give them to the course"
                                      f" earlier, {token_hint})", until)
            return EmbargoedError(f"{name}: the embargo ended on {day} but Zenodo has not released the"
                                  " files yet (it lifts embargoes once a day); try again later", None)
        if status in ("restricted", "embargoed", "closed"):
            return AuthError(f"{name} has {status} files: {token_hint}")
        return SourceError(f"{name} has no files (a metadata-only record?): point key 'record' at a record with files")

    def _single_archive(self, record_id: str, files: list[RecordFile]) -> RecordFile | None:
        extract = self.options.extract
        if extract is False:
            return None
        is_archive = len(files) == 1 and files[0].key.lower().endswith(ARCHIVE_SUFFIXES)
        if extract is True and len(files) != 1:
            raise SourceError(f"key 'extract': Zenodo record {record_id} has {len(files)} files;"
                              " extract unpacks a record made of one archive (set extract = false)")
        return files[0] if extract or is_archive else None

    def _unpack(self, record_id: str, archive: RecordFile) -> tuple[list[Entry], list]:
        if self._archive and self._archive[0] == archive.checksum and archive.checksum:
            return self._archive[1], self._archive[2]
        target = Path(self.scratch_dir()) / f"record-{record_id}.archive"
        with self._download(archive) as body, open(target, "wb") as out:
            shutil.copyfileobj(body, out, 1024 * 1024)
        entries, skipped = _archive.list_archive(target, label=f"Zenodo record {record_id}: {archive.key}",
                                                 work_dir=self.scratch_dir())
        self._archive = (archive.checksum, entries, skipped)
        return entries, skipped

    def _download(self, item: RecordFile) -> BinaryIO:
        return self.session.open_stream(item.url, expected_size=item.size, md5=item.md5)

    def open(self, entry: Entry) -> BinaryIO:
        if _archive.is_member(entry):
            return _archive.open_member(entry)
        return self._download(entry.ref)

    def close(self) -> None:
        self._archive = None
        super().close()
