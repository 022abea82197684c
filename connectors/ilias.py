"""ILIAS through its WebDAV interface (`https://host/webdav.php/<client>/ref_<id>/`).

ILIAS lists only the objects the account may see and read, so a student-role account
gets exactly the released files: offline objects and closed availability windows stay
invisible. ILIAS serves WebDAV through SabreDAV, which refuses `Depth: infinity`, so the
tree is walked folder by folder with `Depth: 1`.
"""
from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Mapping
from urllib.parse import unquote, urljoin, urlsplit

import requests
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ._http import SessionConnector, SourceSession, where
from .base import AuthError, Connector, Entry, Listing, Skipped, SourceError

DAV = "{DAV:}"
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getetag/><d:getlastmodified/>"
    b"</d:prop></d:propfind>"
)
# ILIAS puts this file where object titles collide or cannot be file names.
PROBLEM_FILE = "!_WEBDAV_INFORMATION.txt"
PROBLEM_REASON = ("ILIAS shows this placeholder instead of objects whose titles are duplicated in"
                  " the folder or are not valid file names; give each object in the folder a unique"
                  " title without / \\ : * ? \" < > | so f2git can copy it")


@dataclass
class IliasOptions:
    webdav_url: str = ""
    username_env: str = ""
    password_env: str = ""

    def validate(self) -> None:
        parts = urlsplit(self.webdav_url)
        if not self.webdav_url:
            raise ValueError("missing key 'webdav_url'")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"key 'webdav_url': {self.webdav_url!r} is not an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("key 'webdav_url': expected the WebDAV URL of the course or folder"
                             " (https://host/webdav.php/<client>/ref_<id>/), not a page link")
        if not self.webdav_url.endswith("/"):
            self.webdav_url += "/"
        for key in ("username_env", "password_env"):
            if not getattr(self, key):
                raise ValueError(f"missing key '{key}'")


@dataclass(frozen=True)
class DavItem:
    """One `<d:response>` of a multistatus answer, with the props its 200 propstats carry."""

    url: str  # absolute, as the server encodes it
    path: str  # percent-decoded URL path
    is_folder: bool
    size: int | None
    etag: str
    last_modified: str


def parse_multistatus(body: bytes, request_url: str) -> list[DavItem]:
    """The responses of a PROPFIND answer; raises ValueError when it is not a multistatus."""
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise ValueError(f"not well-formed XML ({type(error).__name__})") from None
    if root.tag != f"{DAV}multistatus":
        raise ValueError(f"expected a DAV:multistatus document, got <{root.tag}>")
    items = []
    for response in root.findall(f"{DAV}response"):
        href = (response.findtext(f"{DAV}href") or "").strip()
        if not href:
            raise ValueError("a response without href")
        status = response.findtext(f"{DAV}status")
        if status and not _is_ok(status):
            # A whole-response error (RFC 4918 §14.24): the member exists but cannot be read.
            raise ValueError(f"the server reported {status.strip()!r} for {unquote(href)}")
        props: dict[str, Any] = {}
        for propstat in response.findall(f"{DAV}propstat"):
            # SabreDAV answers props it lacks (often getetag) in a 404 propstat: not data.
            if not _is_ok(propstat.findtext(f"{DAV}status") or ""):
                continue
            for prop in propstat.findall(f"{DAV}prop/*"):
                props[prop.tag] = prop
        resourcetype = props.get(f"{DAV}resourcetype")
        is_folder = resourcetype is not None and resourcetype.find(f"{DAV}collection") is not None
        length = _text(props, "getcontentlength")
        url = urljoin(request_url, href)  # hrefs may be absolute URLs or absolute paths
        items.append(DavItem(
            url=url,
            path=unquote(urlsplit(url).path, errors="strict"),
            is_folder=is_folder,
            size=int(length) if length.isdigit() else None,
            etag=_text(props, "getetag").removeprefix("W/").strip('"'),
            last_modified=_text(props, "getlastmodified"),
        ))
    return items


def _is_ok(status_line: str) -> bool:
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].startswith("2")


def _text(props: Mapping[str, Any], name: str) -> str:
    element = props.get(f"{DAV}{name}")
    return (element.text or "").strip() if element is not None else ""


class IliasConnector(SessionConnector, Connector):
    source = "ilias"
    label = "ILIAS"
    Options = IliasOptions

    @classmethod
    def describe(cls, options: IliasOptions) -> str:
        return where(options.webdav_url)

    def make_session(self) -> SourceSession:
        username = self.secret(self.options.username_env)
        password = self.secret(self.options.password_env)
        return SourceSession(self.label, self.options.webdav_url,
                             auth=requests.auth.HTTPBasicAuth(username, password), secrets=(password,))

    def list(self, state: Mapping[str, Any]) -> Listing:
        root_url = self.options.webdav_url.rstrip("/") + "/"
        root_path = unquote(urlsplit(root_url).path)
        listing = Listing()
        queue = deque([root_url])
        seen = {root_path}
        while queue:
            folder_url = queue.popleft()
            folder_path = unquote(urlsplit(folder_url).path)
            for item in self._propfind(folder_url):
                if item.path.rstrip("/") == folder_path.rstrip("/"):
                    continue  # the folder's own entry
                if not item.path.startswith(root_path):
                    raise self.session.fail(f"the listing of {where(folder_url)} names"
                                            f" {item.path}, which is outside the course folder")
                relative = item.path[len(root_path):].strip("/")
                if item.is_folder:
                    if item.path not in seen:
                        seen.add(item.path)
                        queue.append(item.url if item.url.endswith("/") else item.url + "/")
                    continue
                if posixpath.basename(relative) == PROBLEM_FILE:
                    listing.skipped.append(Skipped(relative, PROBLEM_REASON))
                    continue
                listing.entries.append(Entry(relative, item.size, self._version(item, relative), ref=item.url))
        listing.entries.sort(key=lambda entry: entry.path)
        return listing

    def _version(self, item: DavItem, relative: str) -> str:
        if item.etag:
            return f"etag:{item.etag}"
        if item.last_modified:
            return f"modified:{item.last_modified}:{item.size}"
        raise self.session.fail(f"gives neither an ETag nor a modification time for {relative};"
                                " changes could not be detected")

    def _propfind(self, url: str) -> list[DavItem]:
        response = self.session.request(
            "PROPFIND", url, ok=(207, 200, 401), data=PROPFIND_BODY,
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        at = where(response.url)
        if response.status_code == 401:
            response.close()
            raise self.session.fail(f"rejected the credentials (401) at {at}: check the account in"
                                    f" {self.options.username_env} and {self.options.password_env}",
                                    AuthError)
        content_type = response.headers.get("Content-Type", "").lower()
        # A login page (often after a redirect) arrives as 200 HTML, not as a 207 listing.
        if response.status_code != 207 or "html" in content_type:
            raise self.session.fail(f"answered with {'an HTML page' if 'html' in content_type else response.status_code}"
                                    f" instead of a WebDAV listing at {at} (a login page? check"
                                    " webdav_url and that the account may log in by WebDAV)")
        try:
            return parse_multistatus(response.content, response.url)
        except (ValueError, UnicodeDecodeError) as error:
            raise self.session.fail(f"sent an unreadable WebDAV listing at {at}: {error}") from None

    def open(self, entry: Entry) -> BinaryIO:
        return self.session.open_stream(entry.ref, expected_size=entry.size)

