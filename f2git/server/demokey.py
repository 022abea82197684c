"""`make run`'s JupyterLab token, handed by the dashboard only to a browser that showed it.

The demo's JupyterLab is guarded by a fresh token (it runs code as whoever ran `make run`), and
the demo's dashboard has no sign-in (`auth = "none"`, loopback only): any local user could open
it. So the dashboard link `make run` prints carries `?demo=<token>`; a dashboard request with it
sets a cookie holding a digest of the token (HttpOnly, SameSite=Strict) and comes back without
it, and from then on "Try this link" and the door's links carry the token, for that browser only.
Without `F2GIT_DEMO_TOKEN` (any server but `make run`'s) none of this happens.
"""
from __future__ import annotations

import hashlib
import hmac
import os
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
    """`link` as this browser may open it: with the demo's token when it showed it, else as is."""
    token = _token()
    cookie = handler.get_cookie(COOKIE)
    if token and cookie and hmac.compare_digest(cookie.encode(), _digest(token).encode()):
        return with_token(link, token)
    return link
