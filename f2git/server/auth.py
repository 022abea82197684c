"""Who is asking, and what they may do. `[server] auth` picks the policy.

The server's handlers call `identify` once per request, then `may_fetch` for git and
course reads, `may_manage` for refreshes and the dashboard.

- `none`: everyone may do everything; only allowed when the server listens on loopback.
- `token`: static bearer tokens from an environment variable (scripts, mirrors, CI).
- `jupyterhub`: f2git runs as a JupyterHub service. Requests carry a hub token
  (`Authorization: token …`, or as the Basic-auth password, which is what git sends), or
  the service's OAuth cookie (browsers). The hub checks the token (cached); per-course
  `groups` restrict fetching to members of those hub groups; hub admins and members of
  `[hub] instructors_group` may manage.
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
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

import tornado.web
from tornado.httputil import url_concat

from f2git.config import ConfigError

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


ANONYMOUS = Identity("anonymous")


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

    def extra_handlers(self, prefix: str | None = None) -> list[tuple]:
        """Routes the policy needs in the app (the OAuth callback for `jupyterhub`)."""
        return []

    def app_settings(self) -> dict[str, Any]:
        """Tornado application settings the policy needs (a cookie secret for OAuth)."""
        return {}

    def login_url(self, handler: "tornado.web.RequestHandler", next_url: str | None = None) -> str | None:
        """Where to send a browser that is not logged in (then to `next_url`, default: here), or None (401)."""
        return None


class NoAuth(Auth):
    """`auth = "none"`: everyone may do everything (allowed on loopback only)."""

    async def identify(self, handler):
        return ANONYMOUS


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
    """`auth = "token"`: any of the configured static tokens may fetch and manage."""

    def __init__(self, tokens: list[str]):
        self._tokens = [t.encode() for t in tokens]

    async def identify(self, handler):
        token = request_token(handler).encode()
        # compare against every token so the time taken says nothing about which one matched
        matched = False
        for candidate in self._tokens:
            matched |= hmac.compare_digest(token, candidate)
        return Identity("token", kind="token") if token and matched else None


class HubMembership:
    """A user's hub groups and admin flag, read with the service's own token and cached."""

    def __init__(self, api_url: str, api_token: str, max_age: float = 60.0):
        self.api_url = api_url.rstrip("/")
        self._api_token = api_token
        self.max_age = max_age
        self._cache: dict[str, tuple[float, frozenset[str], bool]] = {}

    async def lookup(self, name: str) -> tuple[frozenset[str], bool]:
        cached = self._cache.get(name)
        if cached and cached[0] > time.monotonic():
            return cached[1], cached[2]
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = f"{self.api_url}/users/{quote(name, safe='')}"
        try:
            response = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self._api_token}"}, request_timeout=10)
            model = json.loads(response.body)
        except HTTPClientError as error:
            # 403/404: the service's role lacks read:users:groups, or the user is gone: no groups
            log.warning("cannot read hub groups of user %r: HTTP %s", name, error.code)
            model = {}
        groups = frozenset(model.get("groups") or ())
        admin = bool(model.get("admin", False))
        self._cache[name] = (time.monotonic() + self.max_age, groups, admin)
        return groups, admin


class HubAuth(Auth):
    """`auth = "jupyterhub"`: hub tokens and the service's OAuth cookie, checked by the hub."""

    def __init__(self, service_name: str, api_url: str, api_token: str, *,
                 instructors_group: str = "", cache_max_age: int = 60,
                 oauth_client_id: str = "", service_prefix: str = ""):
        from jupyterhub.services.auth import HubOAuth

        self.service_name = service_name
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
        if token:
            model = await self.hub.user_for_token(token, sync=False)
        else:  # a browser with the service's OAuth cookie
            model = await self.hub.get_user(handler, sync=False)
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
        if not identity.service_access:
            return False
        if not course.groups:
            return True
        return identity.admin or bool(identity.groups & set(course.groups))

    def may_manage(self, identity, course):
        if not identity.service_access or identity.kind != "user":
            return False
        return identity.admin or bool(self.instructors_group and self.instructors_group in identity.groups)

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
        return NoAuth()
    if server.auth == "token":
        if not server.tokens_env:
            raise ConfigError(f"{where} key 'tokens_env': required with auth = \"token\"")
        tokens = [t.strip() for t in env.get(server.tokens_env, "").split(",") if t.strip()]
        if not tokens:
            raise ConfigError(f"{where} key 'tokens_env': environment variable {server.tokens_env} holds no tokens")
        return TokenAuth(tokens)
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
                       service_prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", ""))
    raise ConfigError(f"{where} key 'auth': unknown mode {server.auth!r}")
