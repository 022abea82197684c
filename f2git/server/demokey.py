"""`make run`'s JupyterLab token, handed by the dashboard only to its own user's browser.

The demo's JupyterLab is guarded by a fresh token (it runs code as whoever ran `make run`), and
the demo's dashboard has no sign-in (`auth = "none"`, loopback only): any local user could open
it. So "Try this link" and the door's links carry the token only for a browser that is
- run by the same local user as f2git: the kernel's table of TCP sockets (/proc/net/tcp, as
  identd answers) names the owner of the browser's end of a loopback connection; or
- one that opened the dashboard link `make run` prints (`?demo=<token>`): that sets a cookie
  holding a digest of the token (HttpOnly, SameSite=Strict) and comes back without it (for a
  browser in a container or VM, whose sockets the table does not show).
Without `F2GIT_DEMO_TOKEN` (any server but `make run`'s) none of this happens.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import sys
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from f2git.links import DEMO_PARAM, DEMO_TOKEN_ENV, with_token

if TYPE_CHECKING:
    import tornado.web

COOKIE = "f2git-demo"


def _token() -> str | None:
    return os.environ.get(DEMO_TOKEN_ENV) or None


def _digest(token: str) -> str:
    return hmac.new(token.encode(), b"f2git demo dashboard", hashlib.sha256).hexdigest()


def admit(handler: "tornado.web.RequestHandler") -> bool:
    """A request that shows `?demo=…`: remember the browser when it is the token, then send it to
    the same page without it (no token stays in the address bar). True when answered."""
    shown = handler.get_query_argument(DEMO_PARAM, None)
    if shown is None or handler.request.method != "GET":
        return False
    token = _token()
    if token and hmac.compare_digest(shown.encode(), token.encode()):
        handler.set_cookie(COOKIE, _digest(token), path="/", httponly=True, samesite="Strict")
    rest = [(key, value) for key, value in parse_qsl(handler.request.query, keep_blank_values=True)
            if key != DEMO_PARAM]
    handler.redirect(handler.request.path + (f"?{urlencode(rest)}" if rest else ""), status=303)
    return True


def link_for(handler: "tornado.web.RequestHandler", link: str) -> str:
    """`link` as this browser may open it: with the demo's token when it is ours, else as is."""
    token = _token()
    if not token:
        return link
    cookie = handler.get_cookie(COOKIE)
    if cookie and hmac.compare_digest(cookie.encode(), _digest(token).encode()):
        return with_token(link, token)
    return with_token(link, token) if peer_uid(handler) == server_uid() else link


def server_uid() -> int:
    return os.geteuid()


def peer_uid(handler: "tornado.web.RequestHandler") -> int | None:
    """The local user whose socket is the other end of this request's loopback connection, or None."""
    try:
        sock = handler.request.connection.stream.socket
        peer, ours = sock.getpeername()[:2], sock.getsockname()[:2]
    except (AttributeError, OSError):
        return None
    if not ipaddress.ip_address(peer[0]).is_loopback:
        return None
    wanted = (_endpoint(*peer), _endpoint(*ours))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    if len(fields) > 7 and (_parse(fields[1]), _parse(fields[2])) == wanted:
                        return int(fields[7])
        except (OSError, ValueError):
            continue
    return None


def _endpoint(host: str, port: int) -> tuple[ipaddress.IPv6Address, int]:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(f"::ffff:{address}")
    return address, port


def _parse(field: str) -> tuple[ipaddress.IPv6Address, int]:
    """'0100007F:1F90' (IPv4) or 32 hex digits (IPv6, 32-bit words in host order) with the port."""
    hexaddress, hexport = field.split(":")
    words = [bytes.fromhex(hexaddress[at:at + 8]) for at in range(0, len(hexaddress), 8)]
    raw = b"".join(word[::-1] if sys.byteorder == "little" else word for word in words)
    address = ipaddress.ip_address(raw)
    return _endpoint(str(address), int(hexport, 16))
