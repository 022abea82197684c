"""Who is asking, and what they may do. `[server] auth` picks the policy.

The server's handlers call `identify` once per request, then `may_fetch` for git and
course reads, `may_manage` for refreshes and the dashboard.

- `none`: everyone may do everything; only allowed when the server listens on loopback, and
  only for requests to the server's own name (a web page that rebinds its DNS name to
  127.0.0.1 gets nothing).
- `token`: static bearer tokens from environment variables: `tokens_env` tokens may fetch,
  `manage_tokens_env` tokens may also manage (without `manage_tokens_env`, `tokens_env`
  tokens manage too, as before roles existed).
- `jupyterhub`: f2git runs as a JupyterHub service. Requests carry a hub token
  (`Authorization: token …`, or as the Basic-auth password, which is what git sends), or
  the service's OAuth cookie (browsers). The hub checks the token (cached); per-course
  `groups` restrict fetching to members of those hub groups; hub admins and members of
  `[hub] instructors_group` may manage. A course with `members = "lms"` follows its LMS roster
  instead (f2git/roster.py): its active learners fetch, its instructors and TAs fetch and manage
  it, `groups` add learners, `instructors_group` manages it no longer; hub admins keep every right.
  `members = "any"`: every hub user fetches.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import quote, urlsplit

import tornado.routing
import tornado.web
from tornado.httputil import url_concat

from f2git.config import ConfigError
from f2git.roster import Access, Membership, Roster, RosterStore

from .connections import OnceAMinute

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    name: str
    kind: str = "anonymous"  # anonymous | token | user | service
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    # False when the hub knows the token but it lacks access to this service (→ 403, not 401)
    service_access: bool = True
    # The hub token holds read:metrics, the scope JupyterHub's own /hub/metrics asks for.
    read_metrics: bool = False
    # An LMS instructor's LTI session: the courses it may manage, and no others (whatever the policy)
    lti_manages: frozenset[str] = field(default_factory=frozenset)


ANONYMOUS = Identity("anonymous")


class HubUnreachable(tornado.web.HTTPError):
    """The hub could not answer who someone is: 503, retried on the next request."""

    def __init__(self, message: str):
        super().__init__(503)
        self.message = message


class Auth:
    """Base policy. `identify` returns None when credentials are missing or invalid (→ 401)."""

    async def identify(self, handler: "tornado.web.RequestHandler") -> Identity | None:
        raise NotImplementedError

    def may_fetch(self, identity: Identity, course: "CourseConfig") -> bool:
        return True

    def may_manage(self, identity: Identity, course: "CourseConfig | None") -> bool:
        return True

    def may_read_metrics(self, identity: Identity) -> bool:
        return self.may_manage(identity, None)

    def refusal(self, identity: Identity, course: "CourseConfig") -> str:
        """Why `identity` may not fetch `course`, in words for them."""
        return (f"you ({identity.name}) are not in course {course.name!r}: f2git gives its files to the"
                " course's members only; if you should be one, ask your instructor to add you")

    def extra_handlers(self, prefix: str | None = None) -> list[tuple]:
        """Routes the policy needs in the app (the OAuth callback for `jupyterhub`)."""
        return []

    def first_rules(self) -> list[tuple]:
        """Routes tried before all others (the Host check of `none`)."""
        return []

    def app_settings(self) -> dict[str, Any]:
        """Tornado application settings the policy needs (a cookie secret for OAuth)."""
        return {}

    def login_url(self, handler: "tornado.web.RequestHandler", next_url: str | None = None) -> str | None:
        """Where to send a browser that is not logged in (then to `next_url`, default: here), or None (401)."""
        return None


class NoAuth(Auth):
    """`auth = "none"`: everyone may do everything (allowed on loopback only), when they
    ask the server by one of its own names (`names`; empty: any)."""

    def __init__(self, names: Iterable[str] = ()):
        self.names = frozenset(name.lower() for name in names)

    async def identify(self, handler):
        return ANONYMOUS

    def first_rules(self):
        return [(ForeignHost(self.names), ForeignHostHandler, {"names": self.names})] if self.names else []


def host_name(request: Any) -> str:
    """The name in the request's Host header, lower case, without port or IPv6 brackets."""
    return request.host_name.strip("[]")


class ForeignHost(tornado.routing.Matcher):
    """Matches requests whose Host is none of `names`."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def match(self, request):
        return None if host_name(request) in self.names else {}


class ForeignHostHandler(tornado.web.RequestHandler):
    """Refuses every request to a foreign name: a page on another site whose name now points
    here (DNS rebinding) would otherwise read and change everything."""

    def initialize(self, names: frozenset[str]):
        self.names = names

    def prepare(self):
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"f2git answers requests to {', '.join(sorted(self.names))} only,"
                    f" not to {host_name(self.request)!r}\n")


def request_token(handler: "tornado.web.RequestHandler") -> str:
    """The token in `Authorization: Bearer|token X`, or the password of Basic auth ('' if none)."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("bearer", "token"):
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


class TokenAuth(Auth):
    """`auth = "token"`: `tokens` may fetch every course; `manage_tokens` may also manage
    (dashboard, refresh now, mass deletions, metrics)."""

    def __init__(self, tokens: Iterable[str], manage_tokens: Iterable[str] = ()):
        self._tokens = [(t.encode(), False) for t in tokens] + [(t.encode(), True) for t in manage_tokens]

    async def identify(self, handler):
        token = request_token(handler).encode()
        # compare against every token so the time taken says nothing about which one matched
        fetch = manage = False
        for candidate, manages in self._tokens:
            same = hmac.compare_digest(token, candidate)
            manage |= same and manages
            fetch |= same
        if not token or not fetch:
            return None
        return Identity("manage token", kind="token", admin=True) if manage else Identity("fetch token", kind="token")

    def may_manage(self, identity, course):
        return identity.admin


class HubMembership:
    """A user's hub groups and admin flag, read with the service's own token and cached."""

    def __init__(self, api_url: str, api_token: str, max_age: float = 60.0):
        self.api_url = api_url.rstrip("/")
        self._api_token = api_token
        self.max_age = max_age
        self._cache: dict[str, tuple[float, frozenset[str], bool]] = {}

    async def lookup(self, name: str) -> tuple[frozenset[str], bool]:
        """The user's groups and admin flag; HubUnreachable when the hub gives no answer
        (that is not cached: the next request asks again)."""
        cached = self._cache.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1], cached[2]
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = f"{self.api_url}/users/{quote(name, safe='')}"
        try:
            response = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self._api_token}"}, request_timeout=10)
            model = json.loads(response.body)
            if not isinstance(model, dict):
                raise ValueError("not a JSON object")
        except HTTPClientError as error:
            if error.code not in (403, 404):
                raise self.unreachable(f"HTTP {error.code}") from None
            # 403/404 are answers: the service's role lacks read:users:groups, or the user is gone
            log.warning("cannot read hub groups of user %r: HTTP %s", name, error.code)
            model = {}
        except (OSError, ValueError) as error:  # refused, reset, garbled
            raise self.unreachable(type(error).__name__) from None
        groups = frozenset(model.get("groups") or ())
        admin = bool(model.get("admin", False))
        self._cache[name] = (time.monotonic() + self.max_age, groups, admin)
        return groups, admin

    def unreachable(self, cause: str) -> HubUnreachable:
        _said.warning("hub groups", "cannot read users' groups from the hub at %s: %s", self.api_url, cause)
        return HubUnreachable("JupyterHub could not be reached to check your groups; try again in a minute")


_said = OnceAMinute()


class HubAuth(Auth):
    """`auth = "jupyterhub"`: hub tokens and the service's OAuth cookie, checked by the hub."""

    def __init__(self, service_name: str, api_url: str, api_token: str, *,
                 instructors_group: str = "", cache_max_age: int = 60,
                 oauth_client_id: str = "", service_prefix: str = "", rosters: RosterStore | None = None):
        from jupyterhub.services.auth import HubOAuth

        self.service_name = service_name
        self.rosters = rosters
        self.instructors_group = instructors_group
        self.access_scope = f"access:services!service={service_name}"
        # tokens in URLs end up in access logs: only headers and the OAuth cookie count
        settings: dict[str, Any] = dict(api_url=api_url, api_token=api_token,
                                        cache_max_age=cache_max_age, allow_token_in_url=False,
                                        access_scopes={self.access_scope})
        if oauth_client_id:
            settings["oauth_client_id"] = oauth_client_id
        if service_prefix:
            settings["base_url"] = service_prefix
        self.hub = HubOAuth(**settings)
        self.membership = HubMembership(api_url, api_token, max_age=cache_max_age)

    async def identify(self, handler):
        token = request_token(handler)
        try:
            if token:
                model = await self.hub.user_for_token(token, sync=False)
            else:  # a browser with the service's OAuth cookie
                model = await self.hub.get_user(handler, sync=False)
        except tornado.web.HTTPError as error:
            # jupyterhub's HubAuth: 502 for the hub's own 5xx, 500 "Failed to connect" when it
            # is unreachable; its other 500s (a refused service token) are faults, not outages
            if error.status_code != 502 and not (error.log_message or "").startswith("Failed to connect"):
                raise
            raise HubUnreachable("JupyterHub could not be reached to check your login; try again in a minute") from None
        if not model:
            return None
        kind = model.get("kind", "user")
        access = bool(self.hub.check_scopes({self.access_scope}, model))
        metrics = bool(self.hub.check_scopes({"read:metrics"}, model))
        if kind != "user":
            return Identity(model["name"], kind=kind, service_access=access, read_metrics=metrics)
        groups, admin = await self.membership.lookup(model["name"])
        return Identity(model["name"], kind="user", groups=groups, admin=admin, service_access=access,
                        read_metrics=metrics)

    def may_fetch(self, identity, course):
        # who manages a course sees its files on the dashboard: their own link opens for them too
        return self._member(identity, course) or self.may_manage(identity, course)

    def _member(self, identity: Identity, course: "CourseConfig") -> bool:
        if not identity.service_access:
            return False
        if course.members == "any":
            return True
        if course.members == "lms":
            if identity.admin or (course.groups and identity.groups & set(course.groups)):
                return True
            return identity.kind == "user" and self.roster_access(identity, course).fetch
        if not course.groups:
            return True
        return identity.admin or bool(identity.groups & set(course.groups))

    def may_manage(self, identity, course):
        if not identity.service_access or identity.kind != "user":
            return False
        if identity.admin:
            return True
        if course is not None and course.members == "lms":  # the LMS's teachers, not instructors_group
            return self.roster_access(identity, course).manage
        return bool(self.instructors_group and self.instructors_group in identity.groups)

    def roster_access(self, identity: Identity, course: "CourseConfig") -> Access:
        membership = self.rosters.membership(course.name) if self.rosters else None
        if membership is None:  # never read: nobody but hub admins
            membership = Membership(Roster(course.name, course.roster_source))
        return membership.access(identity.name, course.name)

    def refusal(self, identity, course):
        if course.members == "lms" and identity.kind == "user" and identity.service_access:
            return self.roster_access(identity, course).reason or super().refusal(identity, course)
        return super().refusal(identity, course)

    def may_read_metrics(self, identity):
        # The Prometheus that scrapes the hub (a service with read:metrics) may scrape f2git too.
        return identity.read_metrics or self.may_manage(identity, None)

    def extra_handlers(self, prefix=None):
        # the hub sends browsers back to <service prefix>oauth_callback (through its proxy)
        prefix = re.escape((self.hub.base_url if prefix is None else prefix).rstrip("/"))
        return [(prefix + "/oauth_callback", oauth_callback_handler(), {"hub_auth": self.hub}),
                (prefix + "/login", LoginHandler, {"auth": self})]

    def app_settings(self):
        # the OAuth state cookie is a secure cookie; a restart only costs one more OAuth round trip
        return {"cookie_secret": secrets.token_bytes(32)}

    def login_url(self, handler, next_url=None):
        """Where to send a browser without the OAuth cookie (the hub's authorize URL, with state)."""
        params = {}
        code_verifier = None
        if self.hub.pkce_enabled:
            code_verifier, challenge, method = self.hub.generate_pkce_code_challenge()
            params.update(code_challenge=challenge, code_challenge_method=method)
        params["state"] = self.hub.set_state_cookie(handler, next_url=next_url or handler.request.uri,
                                                    code_verifier=code_verifier)
        return url_concat(self.hub.login_url, params)


class LoginHandler(tornado.web.RequestHandler):
    """`GET <prefix>/login?next=<path>`: log in through the hub, then go to `next` (a path here)."""

    def initialize(self, auth: HubAuth):
        self.auth = auth

    def get(self):
        base = self.auth.hub.base_url
        next_url = self.get_argument("next", base)
        if not next_url.startswith(base) or "//" in next_url or "\\" in next_url:
            next_url = base  # never an open redirect to another site
        self.redirect(self.auth.login_url(self, next_url))


def oauth_callback_handler() -> type:
    from jupyterhub.services.auth import HubOAuthCallbackHandler

    class OAuthCallback(HubOAuthCallbackHandler):
        """Finishes the hub's OAuth flow with this policy's HubOAuth, not the global singleton."""

        def initialize(self, hub_auth):
            self.hub_auth = hub_auth

    return OAuthCallback


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_auth(config: "Config", env: Mapping[str, str] | None = None) -> Auth:
    """The policy `[server] auth` names; ConfigError when it cannot work as configured."""
    env = os.environ if env is None else env
    server = config.server
    where = f"{config.path}: [server]"
    if server.auth == "none":
        if not is_loopback(server.host):
            raise ConfigError(
                f"{where} key 'auth': \"none\" lets anyone fetch every course and is allowed only"
                f" when host is a loopback address, not {server.host!r}; use auth = \"token\" or \"jupyterhub\"")
        names = {server.host.strip("[]"), "localhost", "127.0.0.1", "::1"}
        public = urlsplit(server.public_url).hostname
        return NoAuth(names | {public} if public else names)
    if server.auth == "token":
        if not server.tokens_env and not server.manage_tokens_env:
            raise ConfigError(f"{where} key 'tokens_env': required with auth = \"token\" (or manage_tokens_env)")
        tokens = {key: _tokens(env, getattr(server, key), where, key) for key in ("tokens_env", "manage_tokens_env")}
        if not server.manage_tokens_env:  # a config from before roles: its tokens keep every right
            return TokenAuth([], manage_tokens=tokens["tokens_env"])
        return TokenAuth(tokens["tokens_env"], manage_tokens=tokens["manage_tokens_env"])
    if server.auth == "jupyterhub":
        missing = [name for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN") if not env.get(name)]
        if missing:
            raise ConfigError(
                f"{where} key 'auth': \"jupyterhub\" needs {' and '.join(missing)} in the environment"
                " (the hub sets them when it runs f2git as a service; see `f2git hub-config`)")
        try:
            import jupyterhub.services.auth  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where} key 'auth': \"jupyterhub\" needs the jupyterhub package:"
                              " pip install 'f2git[jupyterhub]'") from None
        return HubAuth(env.get("JUPYTERHUB_SERVICE_NAME") or server.service_name,
                       env["JUPYTERHUB_API_URL"], env["JUPYTERHUB_API_TOKEN"],
                       instructors_group=config.hub.instructors_group,
                       oauth_client_id=env.get("JUPYTERHUB_CLIENT_ID", ""),
                       service_prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", ""),
                       rosters=RosterStore(server.data_dir))
    raise ConfigError(f"{where} key 'auth': unknown mode {server.auth!r}")


def _tokens(env: Mapping[str, str], variable: str, where: str, key: str) -> list[str]:
    """The comma-separated tokens in `variable` (none when no variable is named)."""
    if not variable:
        return []
    tokens = [t.strip() for t in env.get(variable, "").split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"{where} key '{key}': environment variable {variable} holds no tokens")
    return tokens
