"""HTTP for connectors: bounded retries with backoff, timeouts, credentials bound to
their own host, JSON that must be JSON, and bodies streamed with their length checked.
"""
from __future__ import annotations

import hashlib
import io
import time
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests

from ._json import TooDeep, loads
from ._redact import redact
from .base import AuthError, SourceError, current_limits, traffic

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0  # s: longest a Retry-After header may make us wait


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def where(url: str) -> str:
    """The part of a URL safe to show: no query (signed download URLs carry tokens), no userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class HostBoundAuth(requests.auth.AuthBase):
    """Adds credentials only to requests for one origin, so a redirect to a files host never gets them."""

    def __init__(self, base_url: str, inner: requests.auth.AuthBase | Callable | None = None,
                 headers: Mapping[str, str] | None = None):
        self.origin = origin(base_url)
        self.inner = inner
        self.headers = dict(headers or {})

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url) != self.origin:
            return request
        request.headers.update(self.headers)
        return self.inner(request) if self.inner else request


def _utf8(value: str) -> bytes:
    try:  # a byte that is not UTF-8 in an environment variable arrives as a lone surrogate
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def basic_auth(username: str, password: str, username_env: str) -> requests.auth.HTTPBasicAuth:
    """HTTP Basic in UTF-8 (RFC 7617), as ILIAS, Stud.IP, browsers and curl send it; requests
    alone encodes str as Latin-1 and raises on "€". Bytes go out as they are."""
    if ":" in username:
        raise SourceError(f"the user name in ${username_env} contains ':', which HTTP Basic"
                          " authentication cannot send (the server splits name and password there)")
    return requests.auth.HTTPBasicAuth(_utf8(username), _utf8(password))


def bearer(token: str, token_env: str) -> dict[str, str]:
    """The Authorization header for a token; a token is printable ASCII, anything else is a copy error."""
    if not all(33 <= ord(c) < 127 for c in token):
        raise SourceError(f"the access token in ${token_env} holds a space, line break or non-ASCII"
                          " character, which no access token has: copy it again")
    return {"Authorization": f"Bearer {token}"}


def network_failure(error: BaseException) -> str:
    """What went wrong on the way, in words: refused, DNS, TLS or timeout."""
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException) else None)
        if cause is None and chain[-1].args and hasattr(chain[-1].args[-1], "reason"):
            cause = chain[-1].args[-1].reason  # urllib3's MaxRetryError keeps it in .reason
    names = [type(c).__name__ for c in chain]
    text = " ".join(str(c) for c in chain).lower()
    if isinstance(error, requests.exceptions.SSLError) or "SSLError" in names or "certificate" in text:
        detail = "certificate verify failed" if "certificate verify failed" in text else "handshake failed"
        return f"failed the TLS check ({detail})"
    if "NameResolutionError" in names or "name or service not known" in text \
            or "temporary failure in name resolution" in text or "nodename nor servname" in text:
        return "could not be found (DNS: the host name does not resolve)"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "timed out while connecting"
    if isinstance(error, requests.Timeout) or "ReadTimeoutError" in names or "timed out" in text:
        return "timed out waiting for an answer"
    if any(isinstance(c, ConnectionRefusedError) for c in chain) or "connection refused" in text:
        return "refused the connection (nothing listens there?)"
    if "reset by peer" in text or any(isinstance(c, ConnectionResetError) for c in chain):
        return "reset the connection"
    return "could not be reached"


def _is_throttled(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    # Canvas answers throttling with 403 and this text.
    return response.status_code == 403 and "rate limit exceeded" in response.text[:500].lower()


class SourceSession:
    """A requests session for one source. Every failure surfaces as SourceError/AuthError."""

    def __init__(self, label: str, base_url: str, *, auth: requests.auth.AuthBase | None = None,
                 headers: Mapping[str, str] | None = None, timeout: tuple[float, float] = (10.0, 60.0),
                 retries: int = 4, backoff: float = 0.5, secrets: tuple[str, ...] = (),
                 sleep: Callable[[float], None] = time.sleep):
        self.label = label
        self.base_url = base_url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.secrets = tuple(s for s in secrets if s)
        self.sleep = sleep
        self.requests_made = 0
        self.session = requests.Session()
        self.session.auth = HostBoundAuth(base_url, auth, headers)
        self.session.max_redirects = 10
        self.session.headers["User-Agent"] = "f2git"

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def fail(self, message: str, cls: type[SourceError] = SourceError) -> SourceError:
        return cls(self.redact(f"{self.label}: {message}"))

    def request(self, method: str, url: str, *, ok: tuple[int, ...] = (200,), stream: bool = False,
                **kwargs: Any) -> requests.Response:
        """One request with bounded retries on network errors, 5xx and throttling."""
        limits = current_limits()
        attempt = 0
        while True:
            attempt += 1
            limits.check(f"{self.label}: {where(url)}")
            self.requests_made += 1
            if (meter := traffic.get()) is not None:
                meter.requests += 1
            try:
                # Always streamed: a body read whole inside requests could trickle past every limit.
                response = self.session.request(method, url, stream=True,
                                                **{"timeout": self._timeout(limits), **kwargs})
                if response.status_code in ok and not stream:
                    self._read_body(response)
            except requests.TooManyRedirects:
                raise self.fail(f"too many redirects from {where(url)}") from None
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt > self.retries:
                    tries = "1 try" if attempt == 1 else f"{attempt} tries"
                    raise self.fail(f"{where(url)} {network_failure(error)} (after {tries})") from None
                self._pause(self.backoff * 2 ** (attempt - 1), limits, url)
                continue
            except requests.RequestException as error:
                raise self.fail(f"request to {where(url)} failed: {type(error).__name__}") from None
            if response.status_code in ok:
                return response
            retryable = response.status_code in RETRY_STATUSES or _is_throttled(response)
            if retryable and attempt <= self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
                response.close()
                self._pause(delay, limits, url)
                continue
            raise self.status_error(response)

    def _timeout(self, limits) -> tuple[float, float]:
        """The per-read timeouts, never past the sync's deadline."""
        left = max(limits.remaining(), 0.1)
        return min(self.timeout[0], left), min(self.timeout[1], left)

    def _pause(self, delay: float, limits, url: str) -> None:
        if delay >= limits.remaining():
            limits.check(f"{self.label}: {where(url)}")
            raise self.fail(f"{where(url)} keeps failing, and sync_timeout ends before the next try")
        self.sleep(delay)

    def _read_body(self, response: requests.Response) -> None:
        """Read a (small) body whole, as requests would, but within the sync's read limits."""
        limits = current_limits()
        what = f"{self.label}: {where(response.url)}"
        watch = limits.watch(what)
        chunks, size = [], 0
        try:
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                watch.count(len(chunk))
                size += len(chunk)
                limits.check_answer(what, size)  # inflated bytes: a gzip bomb counts as what it becomes
                chunks.append(chunk)
        except SourceError:
            response.close()
            raise
        except Exception as error:  # urllib3's IncompleteRead, ProtocolError, ReadTimeoutError…
            response.close()
            raise self.fail(f"the answer of {where(response.url)} broke off: {network_failure(error)}") from None
        response._content = b"".join(chunks)  # what .content, .json() and .text read

    def status_error(self, response: requests.Response) -> SourceError:
        status = response.status_code
        at = where(response.url)
        response.close()
        if status == 401:
            return self.fail("rejected the credentials (401)", AuthError)
        if _is_throttled(response):
            return self.fail(f"kept throttling requests ({status}) at {at}; try again later")
        if status == 403:
            return self.fail(f"refused access (403) to {at}", AuthError)
        if status == 404:
            return self.fail(f"not found (404): {at}")
        return self.fail(f"answered {status} {response.reason or ''} at {at}".replace("  ", " "))

    def get_json(self, url: str, **kwargs: Any) -> tuple[Any, requests.Response]:
        """GET a JSON document; an HTML login page or malformed body is an error, not data."""
        response = self.request("GET", url, **kwargs)
        return self.json_body(response), response

    def json_body(self, response: requests.Response) -> Any:
        """The JSON of a response; an HTML login page or malformed body is an error, not data."""
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower():
            raise self.fail(f"answered with an HTML page instead of JSON at {where(response.url)}"
                            " (a login page? check the URL and credentials)")
        if (meter := traffic.get()) is not None:
            meter.bytes += len(response.content)
        try:
            try:
                return loads(response.content)
            except UnicodeDecodeError:  # a charset json.loads does not detect: as requests decodes it
                return loads(response.text)
        except TooDeep as error:
            raise self.fail(f"answered with {error} at {where(response.url)}") from None
        except ValueError:
            raise self.fail(f"answered with malformed JSON at {where(response.url)}") from None

    def link_pages(self, url: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Follow RFC 5988 `Link: <…>; rel="next"` pagination (Canvas); links are opaque."""
        seen: set[str] = set()
        while url:
            data, response = self.get_json(url, params=params)
            yield data
            params = None  # the next link carries its own query
            url = response.links.get("next", {}).get("url", "")
            if url in seen:
                raise self.fail(f"pagination loops at {where(url)}")
            seen.add(url)

    def open_stream(self, url: str, *, expected_size: int | None = None,
                    md5: str | None = None, **kwargs: Any) -> "BodyStream":
        response = self.request("GET", url, stream=True, **kwargs)
        return BodyStream(response, self, expected_size=expected_size, md5=md5)


class SessionConnector:
    """Mixin for connectors that talk HTTP: `session` is built by `make_session()` on first
    use (so secrets are read only when needed) and closed with the connector."""

    _session: SourceSession | None = None

    def make_session(self) -> SourceSession:
        raise NotImplementedError

    @property
    def session(self) -> SourceSession:
        if self._session is None:
            self._session = self.make_session()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.session.close()
            self._session = None
        super().close()


class BodyStream(io.RawIOBase):
    """A response body as a file: checks the length (and md5) and turns transport errors into SourceError."""

    def __init__(self, response: requests.Response, session: SourceSession, *,
                 expected_size: int | None = None, md5: str | None = None):
        self.response = response
        self.session = session
        header = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") not in ("", "identity")
        self.expected = int(header) if header and header.isdigit() and not encoded else expected_size
        self.md5 = hashlib.md5() if md5 else None
        self.md5_expected = (md5 or "").lower()
        self.received = 0
        self.finished = False
        self.watch = current_limits().watch(f"{session.label}: the download of {where(response.url)}")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.finished:
            return 0
        try:
            # read1: what has arrived, so a trickle is counted as it comes (read() waits for all)
            chunk = self.response.raw.read1(len(buffer), decode_content=True)
        except Exception:  # urllib3's IncompleteRead, ProtocolError, ReadTimeoutError…
            raise self.session.fail(f"the download of {where(self.response.url)} broke off after"
                                    f" {self.received} bytes") from None
        self.watch.count(len(chunk))
        if not chunk:
            self._finish()
            return 0
        self.received += len(chunk)
        if (meter := traffic.get()) is not None:
            meter.bytes += len(chunk)
        if self.md5:
            self.md5.update(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def _finish(self) -> None:
        self.finished = True
        at = where(self.response.url)
        if self.expected is not None and self.received != self.expected:
            raise self.session.fail(f"the download of {at} sent {self.received} bytes, expected {self.expected}")
        if self.md5 and self.md5.hexdigest() != self.md5_expected:
            raise self.session.fail(f"the download of {at} does not match its md5 checksum")

    def close(self) -> None:
        self.response.close()
        super().close()
