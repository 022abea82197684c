"""An LTI 1.3 platform that is not f2git's: OpenLearning's `lti1p3platform`, served over HTTP on 127.0.0.1.

    with LtiPlatform() as platform:
        platform.connect(tool_url)               # f2git's public URL: its login, launch, JWKS
        platform.section()                       # the [[lti.platforms]] table for f2git's config
        hint = platform.add(learner_launch(...)) # a message the platform will send
        browser.launch(platform, hint)           # initiate login → f2git → /authorize → form post to f2git

Routes: `GET /jwks` (its key set; `jwks_mode` makes it down, junk or endless), `GET /authorize`
(the OIDC auth endpoint: lti1p3platform checks the tool's request and answers the self-posting
launch form), `POST /deep-link-return` (lti1p3platform verifies the tool's response against the
tool's JWKS; the items land in `returned`), `POST /token`.

Claim sets shaped as Canvas and Moodle build them (see `canvas_*` and `moodle_*` below).
"""
from __future__ import annotations

import html
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
LEARNER = [MEMBERSHIP + "Learner", "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"]
INSTRUCTOR = [MEMBERSHIP + "Instructor", "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Faculty"]


def new_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class Message:
    """One launch the platform will send when the tool's login comes back with this hint."""

    user_id: str
    roles: list[str]
    context_id: str = "ctx-cs101"
    context_title: str = "CS 101"
    custom: dict[str, str] = field(default_factory=dict)
    document_target: str | None = None
    deep_linking: dict[str, Any] | None = None  # title, accept_types, extra_data
    name: str | None = None
    email: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    memberships_url: str | None = None
    client_id: str | None = None  # the tool it launches: None is f2git, else another registration (the hub)
    storage_target: str | None = None  # offers LTI client-side storage (postMessage), as Canvas does


class _Conf(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs):
        self.registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs):
        return self.registration


class _Request(Request):
    def build_metadata(self, request):
        return {"method": "GET", "get_data": request, "form_data": {}, "headers": {}, "content_type": None,
                "path": "/authorize", "json": None}


class _Login(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs):
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url):
        return url


class _Launch(LTIAdvantageMessageLaunchAbstract):
    def render_launch_form(self, launch_data, **kwargs):
        return ("<!DOCTYPE html><html><body>"
                f'<form method="post" action="{html.escape(launch_data["launch_url"])}" id="launch">'
                f'<input type="hidden" name="id_token" value="{html.escape(launch_data["id_token"])}">'
                f'<input type="hidden" name="state" value="{html.escape(launch_data["state"])}">'
                '<button type="submit">Launch</button></form>'
                "<script>document.getElementById('launch').submit()</script></body></html>")


class LtiPlatform:
    def __init__(self, client_id: str = "f2git-tool", deployment_id: str = "deploy-1"):
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.private_pem, self.public_pem = new_key()
        self.messages: dict[str, Message] = {}
        self.returned: list[list[dict[str, Any]]] = []  # content items of each deep-linking response
        self.returned_claims: list[dict[str, Any]] = []
        self.jwks_mode = "ok"  # ok | down | junk | endless | slow
        self.jwks_requests = 0
        self.id_token_expiration = 300
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.platform = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.url
        self.registration = Registration()
        self.registrations: dict[str, Registration] = {client_id: self.registration}
        self.tool_url = ""

    def __enter__(self) -> "LtiPlatform":
        threading.Thread(target=self._server.serve_forever, daemon=True, name="lti-platform").start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def connect(self, tool_url: str) -> None:
        """Register f2git (its public URL) with this platform, as an admin pastes /lti/config."""
        self.tool_url = tool_url
        (self.registration.set_iss(self.issuer).set_client_id(self.client_id)
         .set_deployment_id(self.deployment_id).set_launch_url(f"{tool_url}/lti/launch")
         .set_deeplink_launch_url(f"{tool_url}/lti/launch").set_oidc_login_url(f"{tool_url}/lti/login")
         .set_platform_public_key(self.public_pem).set_platform_private_key(self.private_pem)
         .set_tool_key_set_url(f"{tool_url}/lti/jwks"))

    def connect_hub(self, hub_url: str, client_id: str = "hub-tool") -> None:
        """Register a JupyterHub with ltiauthenticator as a second tool of this platform."""
        login, callback = f"{hub_url}/hub/lti13/oauth_login", f"{hub_url}/hub/lti13/oauth_callback"
        self.registrations[client_id] = (
            Registration().set_iss(self.issuer).set_client_id(client_id).set_deployment_id(self.deployment_id)
            .set_launch_url(callback).set_oidc_login_url(login).set_platform_public_key(self.public_pem)
            .set_platform_private_key(self.private_pem).set_tool_key_set_url(f"{hub_url}/hub/lti13/jwks"))

    def section(self, **overrides: Any) -> dict[str, Any]:
        return {"name": "lms", "issuer": self.issuer, "client_id": self.client_id,
                "auth_login_url": f"{self.url}/authorize", "key_set_url": f"{self.url}/jwks",
                "auth_token_url": f"{self.url}/token", **overrides}

    @property
    def kid(self) -> str:
        return self.registration.get_kid()

    def add(self, message: Message) -> str:
        hint = secrets.token_hex(8)
        self.messages[hint] = message
        return hint

    def login_initiation(self, hint: str) -> str:
        """The tool login URL the platform sends the browser to (third-party initiated login)."""
        registration = self.registrations[self.messages[hint].client_id or self.client_id]
        login = _Login(None, _Conf(registration=registration))
        login.set_lti_message_hint(hint=hint)
        url = login.initiate_login(self.messages[hint].user_id)
        target = self.messages[hint].storage_target
        return url + "&" + urlencode({"lti_storage_target": target}) if target else url

    def launch_form(self, params: dict[str, str]) -> str:
        """What /authorize answers: lti1p3platform checks the tool's request and signs the launch."""
        message = self.messages[params["lti_message_hint"]]
        registration = self.registrations.get(params.get("client_id", ""), self.registration)
        launch = _Launch(_Request(params), _Conf(registration=registration))
        launch.set_id_token_expiration(self.id_token_expiration)
        launch.set_user_data(message.user_id, message.roles, full_name=message.name, email_address=message.email)
        launch.set_launch_context_claim(message.context_id, context_types=[
            "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"], context_title=message.context_title)
        launch.set_resource_link_claim(f"link-{params['lti_message_hint']}")
        if message.document_target or message.extra.get("return_url"):
            launch.set_launch_presentation_claim(message.document_target, message.extra.get("return_url"))
        if message.custom:
            launch.set_custom_parameters_claim(message.custom)
        if message.memberships_url:
            launch.set_nrps(message.memberships_url)
        if message.deep_linking is not None:
            launch.set_dl(f"{self.url}/deep-link-return", title=message.deep_linking.get("title", ""),
                          accept_types=message.deep_linking.get("accept_types"),
                          extra_data=message.deep_linking.get("data"))
            settings = message.deep_linking.get("settings")
            if settings:
                launch._deep_linking_launch_data[
                    "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"].update(settings)
        launch.set_extra_claims({k: v for k, v in message.extra.items() if k != "return_url"})
        return launch.lti_launch()

    def sign(self, claims: dict[str, Any], *, key: str | None = None, headers: dict[str, Any] | None = None,
             algorithm: str = "RS256") -> str:
        """A token as an attacker or a broken platform would make it."""
        return jwt.encode(claims, self.private_pem if key is None else key, algorithm=algorithm,
                          headers={"kid": self.kid, **(headers or {})})

    def claims(self, message: Message, nonce: str, **changes: Any) -> dict[str, Any]:
        """The claims lti1p3platform would sign for `message` (iat/exp now), with `changes`."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "azp": self.client_id, "sub": message.user_id,
                  "iat": now, "exp": now + 300, "nonce": nonce,
                  LTI + "message_type": "LtiResourceLinkRequest", LTI + "version": "1.3.0",
                  LTI + "deployment_id": self.deployment_id, LTI + "roles": message.roles,
                  LTI + "target_link_uri": f"{self.tool_url}/lti/launch",
                  LTI + "resource_link": {"id": "link-1"},
                  LTI + "context": {"id": message.context_id, "title": message.context_title},
                  LTI + "custom": message.custom}
        if message.deep_linking is not None:
            claims[LTI + "message_type"] = "LtiDeepLinkingRequest"
            claims["https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"] = {
                "deep_link_return_url": f"{self.url}/deep-link-return", "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"], "accept_multiple": True,
                **message.deep_linking.get("settings", {})}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}


# LTI client-side storage in the LMS page (1EdTech "LTI Client Side postMessages"; Canvas's
# lti_storage_target): lti.put_data / lti.get_data from the tool's frame, answered to its origin.
STORAGE_SCRIPT = """
const stored = {};
window.addEventListener("message", (event) => {
  const m = event.data || {};
  if (m.subject === "lti.put_data") {
    stored[event.origin + " " + m.key] = m.value;
    event.source.postMessage({subject: "lti.put_data.response", message_id: m.message_id, key: m.key,
                              value: m.value}, event.origin);
  } else if (m.subject === "lti.get_data") {
    const key = event.origin + " " + m.key;
    event.source.postMessage(key in stored
      ? {subject: "lti.get_data.response", message_id: m.message_id, key: m.key, value: stored[key]}
      : {subject: "lti.get_data.response", message_id: m.message_id, key: m.key,
         error: {code: "bad_request", message: "no such key"}}, event.origin);
  }
});
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    @property
    def platform(self) -> LtiPlatform:
        return self.server.platform  # type: ignore[attr-defined]

    def answer(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/jwks":
            self.jwks()
        elif parts.path == "/authorize":
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            try:
                form = self.platform.launch_form(params)
            except Exception as error:  # lti1p3platform refused the tool's request
                self.answer(400, f"platform refused the authorization request: {error!r}".encode())
                return
            self.answer(200, form.encode())
        elif parts.path == "/course":  # the LMS page that frames the tool (hint) or any page (src)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            src = query.get("src") or self.platform.login_initiation(query["hint"])
            self.answer(200, ("<!DOCTYPE html><title>LMS course</title><h1>LMS course</h1>"
                              f'<iframe id="tool" src="{html.escape(src)}" width="1000" height="700"></iframe>'
                              f"<script>{STORAGE_SCRIPT}</script>").encode())
        elif parts.path.startswith("/hub/"):  # stands in for the hub the 303 lands on
            self.answer(200, b"<!DOCTYPE html><title>hub</title><p id='hub'>the hub</p>")
        else:
            self.answer(404, b"not found")

    def jwks(self):
        import json

        platform = self.platform
        platform.jwks_requests += 1
        mode = platform.jwks_mode
        if mode == "down":
            self.answer(503, b"down for maintenance")
        elif mode == "junk":
            self.answer(200, b"<html>not a key set</html>" * 10, "application/json")
        elif mode == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b'{"keys": [' + b" " * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return
        else:
            keys = _Conf(registration=platform.registration)
            keys.get_registration()
            self.answer(200, json.dumps(keys.get_jwks()).encode(), "application/json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if urlsplit(self.path).path == "/deep-link-return":
            conf = _Conf(registration=self.platform.registration)
            conf.get_registration()
            try:
                items = conf.validate_deeplinking_resp(form)
                claims = jwt.decode(form["JWT"], options={"verify_signature": False})
            except Exception as error:
                self.answer(400, f"deep-linking response refused: {error!r}".encode())
                return
            self.platform.returned.append(items)
            self.platform.returned_claims.append(claims)
            self.platform.registration.set_tool_key_set(None)  # read the tool's JWKS again next time
            self.answer(200, b"<!DOCTYPE html><p id='saved'>Content saved in the LMS.</p>")
        else:
            self.answer(404, b"not found")


class LoopbackSession(requests.Session):
    """Secure cookies travel over http to 127.0.0.1, as browsers treat loopback as secure
    (requests would not send them; the tests check the Secure flag on Set-Cookie themselves)."""

    def request(self, *args, **kwargs):
        for cookie in self.cookies:
            cookie.secure = False
        return super().request(*args, **kwargs)


class Browser:
    """A person's browser between the platform and f2git: cookies, the platform's self-posting forms."""

    def __init__(self):
        self.session = LoopbackSession()

    def login(self, platform: LtiPlatform, hint: str) -> requests.Response:
        """The platform starts the login at f2git; f2git's answer (a redirect to /authorize, or a refusal)."""
        return self.session.get(platform.login_initiation(hint), allow_redirects=False, timeout=30)

    def authorize(self, response: requests.Response) -> tuple[str, dict[str, str]]:
        """Follow f2git's redirect to the platform: its launch form's action and fields."""
        answer = self.session.get(response.headers["Location"], timeout=30)
        assert answer.status_code == 200, answer.text
        return form_of(answer.text)

    def launch(self, platform: LtiPlatform, hint: str) -> requests.Response:
        login = self.login(platform, hint)
        assert login.status_code == 302, login.text
        action, fields = self.authorize(login)
        return self.session.post(action, data=fields, allow_redirects=False, timeout=60)

    def pending(self, platform: LtiPlatform, hint: str) -> tuple[str, str]:
        """A login f2git started and this browser holds: (state, nonce), for hand-made tokens."""
        login = self.login(platform, hint)
        query = parse_qs(urlsplit(login.headers["Location"]).query)
        return query["state"][0], query["nonce"][0]


def form_of(page: str) -> tuple[str, dict[str, str]]:
    """The first form's action and its inputs (hidden and checked ones)."""
    action = html.unescape(re.search(r'<form[^>]*action="([^"]*)"', page).group(1))
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and ('type="hidden"' in tag or "checked" in tag):
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
    return action, fields


# -- claim sets shaped as the LMSes build them --

def canvas_extra(tool_url: str, course_id: str = "4242") -> dict[str, Any]:
    """What Canvas adds (canvas-lms lib/lti/messages/jwt_message.rb: add_security_claims!,
    add_tool_platform_claims!, add_launch_presentation_claims! (document_target always 'iframe'),
    add_i18n_claims!, lti11_legacy_user_id; custom_fields from the developer key)."""
    return {LTI + "tool_platform": {"guid": "canvas-root-account", "name": "Example University",
                                    "version": "cloud", "product_family_code": "canvas"},
            LTI + "lti11_legacy_user_id": "a1b2c3", "locale": "en",
            "https://www.instructure.com/placement": "link_selection",
            "return_url": f"{tool_url}/courses/{course_id}/external_content/success/external_tool_redirect"}


def canvas_learner(user: str, context: str, custom: dict[str, str] | None = None) -> Message:
    """A Canvas resource-link launch (lib/lti/messages/resource_link_request.rb) of a student."""
    return Message(user_id=user, roles=[MEMBERSHIP + "Learner", "http://purl.imsglobal.org/vocab/lis/v2/system/person#User"],
                   context_id=context, context_title="CS 101 (Fall)", document_target="iframe",
                   custom={"canvas_course_id": "4242", **(custom or {})}, name="Ada Student",
                   email=f"{user}@example.edu", extra=canvas_extra("https://canvas.example.edu"))


def canvas_instructor_picker(user: str, context: str, placement: str = "link_selection") -> Message:
    """A Canvas deep-linking request (lib/lti/messages/deep_linking_request.rb, DEEP_LINKING_DETAILS)."""
    details = {"link_selection": {"accept_multiple": True, "accept_types": ["ltiResourceLink"],
                                  "accept_presentation_document_targets": ["iframe", "window"], "auto_create": False},
               "assignment_selection": {"accept_multiple": False, "accept_types": ["ltiResourceLink"],
                                        "accept_presentation_document_targets": ["iframe", "window"],
                                        "auto_create": False},
               "editor_button": {"accept_multiple": True,
                                 "accept_types": ["link", "file", "html", "ltiResourceLink", "image"],
                                 "accept_presentation_document_targets": ["embed", "iframe", "window"],
                                 "auto_create": False}}[placement]
    return Message(user_id=user, roles=[MEMBERSHIP + "Instructor"], context_id=context, context_title="CS 101 (Fall)",
                   document_target="iframe", custom={"canvas_course_id": "4242"},
                   deep_linking={"title": "f2git", "accept_types": set(details["accept_types"]) & {
                       "ltiResourceLink", "link", "html", "image", "file"}, "settings": details},
                   extra=canvas_extra("https://canvas.example.edu"))


def moodle_extra(user_name: str) -> dict[str, Any]:
    """What Moodle adds (mod/lti/locallib.php: lti_get_jwt_claim_mapping → tool_platform, lis, ext)."""
    return {LTI + "tool_platform": {"product_family_code": "moodle", "version": "2024042200",
                                    "guid": "moodle.example.edu", "name": "Example Moodle"},
            LTI + "lis": {"person_sourcedid": "", "course_section_sourcedid": ""},
            LTI + "ext": {"user_username": user_name, "lms": "moodle-2"}}


def moodle_learner(user: str, context: str, custom: dict[str, str] | None = None, window: bool = True) -> Message:
    """A Moodle launch (mod/lti/locallib.php lti_build_request_lti; launch container 'window' or 'iframe')."""
    return Message(user_id=user, roles=[MEMBERSHIP + "Learner"], context_id=context, context_title="Intro to CS",
                   document_target="window" if window else "iframe", custom=custom or {},
                   name="Bo Student", email=f"{user}@moodle.example.edu", extra=moodle_extra(f"stud{user}"))


def moodle_instructor_picker(user: str, context: str) -> Message:
    """Moodle's ContentItemSelectionRequest as LTI 1.3 (mod/lti/locallib.php lti_build_content_item_selection_request)."""
    return Message(user_id=user, roles=[MEMBERSHIP + "Instructor"], context_id=context, context_title="Intro to CS",
                   deep_linking={"title": "Intro to CS", "accept_types": {"ltiResourceLink"}, "settings": {
                       "accept_presentation_document_targets": ["frame", "iframe", "window"],
                       "accept_multiple": True, "auto_create": False}},
                   extra=moodle_extra(f"teach{user}"))
