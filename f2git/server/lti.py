"""The LTI 1.3 tool's pages: `/lti/login`, `/lti/launch`, `/lti/jwks`, `/lti/deep-link`, `/lti/config`.

The checks live in `f2git/lti/`; this module speaks HTTP. Every refusal is an HTML page (4xx)
in words, logged without the token, never a redirect; it and the other pages a launch can end on
(request filed, open in a new tab) are the door's student pages (handoff.student_page), in the
browser's language, every sentence from the catalogue f2git.words. Pages the LMS frames allow exactly the
configured platforms' origins (and the origin the verified launch names) as frame ancestors.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit

import tornado.web
from cryptography.hazmat.primitives import serialization

from f2git import filetree, words
from f2git.config import APPS
from f2git.links import BadLinkPath, check_in_course, course_link
from f2git.lti import Refused, deeplink, provision
from f2git.lti.contexts import ContextStore
from f2git.lti.keys import ToolKeys
from f2git.lti.launch import DEEP_LINKING, Launch, LaunchRefused, verify
from f2git.lti.login import LoginRefused, Logins, cookie_name
from f2git.lti.platform_keys import PlatformKeys
from f2git.store import CourseRepo

from .base import BaseHandler, Refusal
from .dashboard import DashboardHandler
from .handoff import hand_off, student_page
from .ltisession import COOKIE as SESSION_COOKIE, secret_for, session_cookie

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig, PlatformConfig

log = logging.getLogger("f2git.lti")

PICKER_TTL = 3600  # s an instructor may spend in the picker
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
# a page's title when its topic has none of its own (f2git.words)
TITLES = {400: "lti.unusable.title", 403: "lti.refused.title", 404: "lti.missing.title", 405: "lti.unusable.title"}


class Tool:
    """What the LTI pages share: the tool's keys, the platforms' keys, the logins."""

    def __init__(self, config: "Config"):
        assert config.lti is not None
        self.config = config
        self.lti = config.lti
        self.keys = ToolKeys.for_config(config.lti)
        self.platform_keys = PlatformKeys()
        self.contexts = ContextStore.for_config(config)
        self.requests = provision.Requests.for_config(config)
        self._recorded: dict[tuple[str, str], tuple[str, str]] = {}
        der = self.keys.signing.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.secret = secret_for(der)
        self.logins = Logins(self.secret)  # states signed with it: no memory per login

    async def record_context(self, launch: Launch) -> None:
        """Tell the context store what this launch says, when it says something new (the file stays
        untouched by the hundreds of launches that repeat it)."""
        said = (launch.context_title, launch.memberships_url)
        key = (launch.platform.name, launch.context_id)
        if self._recorded.get(key) != said:
            await asyncio.to_thread(self.contexts.record, *key, *said)
            self._recorded[key] = said

    def url(self, path: str) -> str:
        return f"{self.config.server.public_url}/lti/{path}"

    def origins(self) -> list[str]:
        """The configured platforms' origins: the pages they frame allow these."""
        found: list[str] = []
        for platform in self.lti.platforms:
            for url in (platform.issuer, platform.auth_login_url):
                origin = origin_of(url)
                if origin and origin not in found:
                    found.append(origin)
        return found

    def seal(self, name: str, value: dict[str, Any]) -> str:
        return tornado.web.create_signed_value(self.secret, name, json.dumps(value)).decode()

    def unseal(self, name: str, value: str, max_age: float) -> dict[str, Any] | None:
        raw = tornado.web.decode_signed_value(self.secret, name, value, max_age_days=max_age / 86400)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None


STORAGE_TARGET = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # a frame name, or "_parent"


def storage_key(state: str) -> str:
    return "f2git-binding-" + hashlib.sha256(state.encode()).hexdigest()[:32]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


class LtiRefusal(Refusal):
    """A `Refused` on its way to the page that says it."""

    def __init__(self, refused: Refused):
        super().__init__(refused.status, refused.message)
        self.refused = refused


class LtiPage(BaseHandler):
    """No hub login here: the platform's signed statement is the login."""

    root = "../"
    frame_origins: list[str]

    def initialize(self, tool: Tool) -> None:
        self.tool = tool

    async def prepare(self) -> None:
        self.frame_origins = self.tool.origins()

    def get_template_path(self) -> str:
        from .dashboard import TEMPLATES

        return str(TEMPLATES)

    def refuse(self, status: int, topic: str, **details: Any) -> NoReturn:
        self.refused(Refused(status, topic, **details))

    def refused(self, error: Refused) -> NoReturn:
        log.warning("LTI %s refused (%d): %s", self.request.path, error.status, error.message)  # never the token
        raise LtiRefusal(error)

    def say(self, status: int, topic: str, *, title: str | None = None, todo: str | None = None,
            **details: Any) -> None:
        """Answer the page `topic` of f2git.words in the browser's language, framable by the LMS.
        No "Try again": a launch is a single-use form post, so a reload would be refused."""
        own_title, own_todo = f"{topic}.title", f"{topic}.todo"
        self.allow_frames()
        student_page(self, topic, status, title=own_title if own_title in words.WORDS else
                     title or TITLES.get(status, "lti.failed.title"),
                     todo=own_todo if own_todo in words.WORDS else todo or "lti.relaunch.todo", retry=False, **details)

    def allow_frames(self) -> None:
        """This answer may show inside the LMS's frame (and only there)."""
        self.set_header("Content-Security-Policy",
                        "default-src 'self'; style-src 'self'; script-src 'self'; base-uri 'none';"
                        " frame-ancestors " + (" ".join(self.frame_origins) or "'none'"))

    def signing_in(self, **values: Any) -> None:
        """The page that keeps or fetches the login's binding in the platform's storage (lti.js)."""
        lang = words.language(self.request.headers.get("Accept-Language"))
        self.set_header("Content-Language", lang)
        self.set_header("Vary", "Accept-Language")
        self.page("lti_storage.html", heading=words.say(lang, "lti.signing_in"),
                  failed=words.say(lang, "lti.storage_failed"), **values)

    def page(self, template: str, **values: Any) -> None:
        from .dashboard import STATIC_VERSION

        self.set_header("Cache-Control", "no-store")
        self.allow_frames()
        self.render(template, root=self.root, static_version=STATIC_VERSION, identity=None, **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        refused = error.refused if isinstance(error, LtiRefusal) else Refused(status_code, "lti.error", code=status_code)
        self.say(refused.status, refused.topic, todo=refused.todo, reason=refused.reason, **refused.values)

    def set_lti_cookie(self, name: str, value: str | bytes, max_age: float) -> None:
        # LMSes frame tools, so the cookie must travel in a third-party context
        self.set_cookie(name, value, path="/", secure=True, httponly=True, samesite="None",
                        expires=time.time() + max_age)


class LoginHandler(LtiPage):
    """OIDC third-party initiated login, by GET or POST."""

    def get(self) -> None:
        self.login()

    def post(self) -> None:
        self.login()

    def login(self) -> None:
        issuer = self.get_argument("iss", "")
        client_id = self.get_argument("client_id", "")
        login_hint = self.get_argument("login_hint", "")
        target = self.get_argument("target_link_uri", "")
        if not issuer or not login_hint:
            self.refuse(400, "lti.login_incomplete", todo="lti.from_lms.todo")
        platforms = [p for p in self.tool.lti.platforms if p.issuer == issuer
                     and (not client_id or p.client_id == client_id)]
        if not platforms:
            self.refuse(403, "lti.unknown_platform")
        if len(platforms) > 1:
            self.refuse(400, "lti.ambiguous")
        platform = platforms[0]
        public = self.config.server.public_url
        if target and not (target == public or target.startswith(public + "/")):
            self.refuse(400, "lti.foreign_target", todo="lti.from_lms.todo")
        storage = self.get_argument("lti_storage_target", "")
        storage = storage if STORAGE_TARGET.fullmatch(storage) else ""
        try:
            state, nonce, binding = self.tool.logins.begin(platform.name, storage)
        except LoginRefused as error:
            self.refused(error)
        self.set_lti_cookie(cookie_name(state), binding, self.tool.logins.ttl)
        params = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
                  "client_id": platform.client_id, "redirect_uri": self.tool.url("launch"),
                  "login_hint": login_hint, "state": state, "nonce": nonce}
        for name in ("lti_message_hint", "lti_deployment_id"):
            value = self.get_argument(name, "")
            if value:
                params[name] = value
        separator = "&" if urlsplit(platform.auth_login_url).query else "?"
        authorize = platform.auth_login_url + separator + urlencode(params)
        if storage:  # the cookie may be blocked: keep the binding in the platform's storage too, then go on
            self.signing_in(action="put", target=storage, origin=origin_of(platform.auth_login_url),
                            key=storage_key(state), value=binding, next_url=authorize, fields={})
            return
        self.redirect(authorize, status=302)


class LaunchHandler(LtiPage):
    """The redirect_uri: every message from a platform arrives here."""

    async def post(self) -> None:
        token = self.get_body_argument("id_token", "")
        state = self.get_body_argument("state", "")
        binding = (self.get_cookie(cookie_name(state)) if state else None) or self.get_body_argument("binding", "")
        started = self.tool.logins.peek(state)
        if not binding and started is not None and started.storage_target:
            # no cookie came back (third-party cookies blocked): fetch the binding from the platform's storage
            platform = self.tool.lti.platform(started.platform)
            self.signing_in(action="get", target=started.storage_target,
                             origin=origin_of(platform.auth_login_url) if platform else "", key=storage_key(state),
                             value="", next_url="launch", fields={"id_token": token, "state": state})
            return
        try:
            pending = self.tool.logins.finish(state, binding or None)
        except LoginRefused as error:
            self.refused(error)
        self.clear_cookie(cookie_name(state), path="/")
        try:
            launch = await verify(self.tool.lti, token, self.tool.platform_keys, pending.nonce)
        except LaunchRefused as error:
            self.refused(error)
        if launch.platform.name != pending.platform:
            self.refuse(403, "lti.other_platform", todo="lti.relaunch.todo")
        self.frame_origins = self.launch_origins(launch)
        if launch.context_id:
            await self.tool.record_context(launch)
        if launch.message_type == DEEP_LINKING:
            await self.picker(launch)
        else:
            await self.resource_link(launch)

    def get(self) -> None:
        self.refuse(405, "lti.not_a_launch", todo="lti.from_lms.todo")

    def launch_origins(self, launch: Launch) -> list[str]:
        origins = list(self.frame_origins)
        for url in (launch.return_url, str(launch.deep_linking.get("deep_link_return_url", ""))):
            origin = origin_of(url)
            if origin and origin not in origins:
                origins.append(origin)
        return origins

    def claiming(self, launch: Launch) -> list["CourseConfig"]:
        key = self.tool.lti.context_key(launch.platform, launch.context_id)
        return [course for course in self.config.courses.values() if launch.context_id and key in course.lti_contexts]

    async def unclaimed(self, launch: Launch) -> list["CourseConfig"] | None:
        """An LMS course no f2git course claims: for an instructor, `[lti] provision` decides
        (the new course, or None once the page saying a request is filed is written)."""
        key = self.tool.lti.context_key(launch.platform, launch.context_id)
        mode = self.tool.lti.provision
        if not launch.teaches or not launch.context_id:
            self.refuse(404, "lti.unserved")
        if mode == "off":
            self.refuse(404, "lti.off", context_key=key)
        request = provision.request_for(self.config, launch, self.instructor_name(launch))
        if mode == "ask":
            filed = await asyncio.to_thread(self.tool.requests.add, request)
            log.info("LTI provision: %s asks for a course for %s (%s)", filed.instructor, filed.key, filed.context_title)
            self.say(202, "lti.filed", context=filed.context_title, course=filed.course,
                     source=source_words(self.request.headers.get("Accept-Language"), filed.table))
            return None
        try:
            course = await asyncio.to_thread(provision.create, self.config, request)
        except provision.ProvisionError as error:
            self.refuse(409, "lti.create_failed", todo="lti.admin.todo", reason=str(error))
        self.refresher.add_course(course.name)
        log.info("LTI provision: created course %s for %s (%s)", course.name, request.key, request.context_title)
        return [course]

    def instructor_name(self, launch: Launch) -> str:
        return launch.claim(self.tool.lti.username_claim) or launch.sub

    # -- students' links and the instructors' course navigation --

    async def resource_link(self, launch: Launch) -> None:
        custom = launch.custom
        claiming = self.claiming(launch)
        name = custom.get("f2git_course")
        if name:
            course = self.config.courses.get(name)
            if course is None:
                self.refuse(404, "lti.course_gone", todo="lti.instructor.todo", course=repr(name))
            if course not in claiming:
                self.refuse(403, "lti.other_context", course=repr(name))
            await self.open_content(launch, course, custom.get("f2git_path", ""), custom.get("f2git_app", ""),
                                    custom.get("f2git_target", ""))
            return
        if not claiming:
            claiming = await self.unclaimed(launch)
            if claiming is None:
                return
        if launch.teaches:
            self.open_dashboard(launch, claiming)
        else:
            await self.open_content(launch, claiming[0], "", "", "")

    async def open_content(self, launch: Launch, course: "CourseConfig", path: str, app: str, target: str) -> None:
        apps = self.config.hub.apps
        app = app if app in apps else apps[0]
        if path.strip("/"):
            await self.refresher.on_click(course)  # the link may name a file released a minute ago
            await self.refresher.load_heads([course.name])
            commit = self.refresher.status(course.name).commit
            files = await asyncio.to_thread(filetree.snapshot_files, CourseRepo.for_course(self.config, course.name),
                                            commit)
            try:
                check_in_course(path, [info.path for info in files])
            except BadLinkPath:
                self.refuse(404, "lti.file_gone", todo="lti.instructor.todo", path=repr(path),
                            course=repr(course.name))
        if launch.document_target in ("iframe", "frame") and target not in ("iframe", "window"):
            # JupyterLab inside an LMS frame is no place to work: offer a new tab. An item that asked
            # for a window was opened in one (Canvas says "iframe" for every launch, jwt_message.rb).
            link = course_link(self.config, course.name, path or None, app=app)
            self.say(200, "lti.new_tab" if path.strip("/") else "lti.new_tab_folder", todo="lti.new_tab.todo",
                     title="lti.new_tab.title", continue_url=link, continue_label="lti.new_tab.open", new_tab=True,
                     path=path.strip("/"), course=course.name, app=APPS[app][0])
            return
        self.allow_frames()  # the handoff's own pages (source failing, held, busy) show in the LMS's frame too
        await hand_off(self, course, path or None, app)

    def open_dashboard(self, launch: Launch, courses: list["CourseConfig"]) -> None:
        name = self.instructor_name(launch)
        self.set_lti_cookie(SESSION_COOKIE, session_cookie(self.tool.secret, name, [c.name for c in courses],
                                                           self.frame_origins), 8 * 3600)
        self.set_lti_cookie("_xsrf", self.xsrf_token, 8 * 3600)  # the dashboard's forms, inside the frame
        target = f"courses/{quote(courses[0].name, safe='')}" if len(courses) == 1 else ""
        self.redirect(f"{self.config.server.public_url}/{target}", status=303)

    # -- deep linking: the picker --

    async def picker(self, launch: Launch) -> None:
        if not launch.teaches:
            self.refuse(403, "lti.learner_picker")
        courses = self.claiming(launch)
        if not courses:
            courses = await self.unclaimed(launch)
            if courses is None:
                return
        try:
            request = deeplink.Request.from_settings(launch.deep_linking)
        except deeplink.PickRefused as error:
            self.refused(error)
        sealed = self.tool.seal("picker", {
            "platform": launch.platform.name, "deployment": launch.deployment_id, "request": request.to_json(),
            "courses": [c.name for c in courses], "frame": self.frame_origins})
        await self.refresher.load_heads([c.name for c in courses])
        views = []
        for course in courses:
            commit = self.refresher.status(course.name).commit
            files = await asyncio.to_thread(filetree.snapshot_files,
                                            CourseRepo.for_course(self.config, course.name), commit)
            views.append((course.name, picker_entries(files)))
        self.page("lti_picker.html", launch_value=sealed, views=views, multiple=request.accept_multiple,
                  apps=[(name, APPS[name][0]) for name in self.config.hub.apps], targets=request.targets,
                  title=str(launch.deep_linking.get("title") or ""))


def source_words(accept_language: str | None, table: dict[str, Any]) -> str:
    """Where a requested course's files would come from, in the browser's language."""
    lang = words.language(accept_language)
    if table.get("source") == "local":
        return words.say(lang, "lti.source_local", path=table.get("path", ""))
    return words.say(lang, "lti.source_lms", source=table.get("source"), course_id=table.get("course_id"),
                     url=table.get("url"))


def picker_entries(files: list[filetree.FileInfo]) -> list[tuple[str, str, bool]]:
    """(path, label, is_folder) of the course folder, each folder and each file, in tree order."""
    entries: list[tuple[str, str, bool]] = [("", "The whole course folder", True)]
    seen: set[str] = set()
    for info in files:
        parts = info.path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in seen:
                seen.add(folder)
                entries.append((folder, folder + "/", True))
        entries.append((info.path, info.path, False))
    return entries


class DeepLinkHandler(LtiPage):
    """The picker's own form: answers the signed LtiDeepLinkingResponse as a self-posting form."""

    async def post(self) -> None:
        try:
            self.check_same_origin()
        except Refusal:
            self.refuse(403, "lti.cross_site", todo="lti.picker_expired.todo")
        data = self.tool.unseal("picker", self.get_body_argument("launch", ""), PICKER_TTL)
        if data is None:
            self.refuse(400, "lti.picker_expired")
        self.frame_origins = data["frame"]
        platform = self.tool.lti.platform(data["platform"])
        if platform is None:
            self.refuse(403, "lti.platform_gone", todo="lti.admin.todo")
        name = self.get_body_argument("course", "")
        if name not in data["courses"]:
            self.refuse(403, "lti.picker_course", todo="lti.picker_expired.todo", course=repr(name))
        course = self.config.courses.get(name)
        if course is None:
            self.refuse(404, "lti.course_gone", todo="lti.picker_expired.todo", course=repr(name))
        request = deeplink.Request.from_json(data["request"])
        app = self.get_body_argument("app", "")
        if app not in self.config.hub.apps:
            self.refuse(400, "lti.picker_app", todo="lti.one_item.todo", apps=", ".join(self.config.hub.apps),
                        app=repr(app))
        target = self.get_body_argument("target", "")
        target = target if target in request.targets else (request.targets[0] if request.targets else "")
        paths = [p.strip("/") for p in self.get_body_arguments("path")] or [""]
        await self.refresher.load_heads([course.name])
        files = await asyncio.to_thread(filetree.snapshot_files, CourseRepo.for_course(self.config, course.name),
                                        self.refresher.status(course.name).commit)
        names = [info.path for info in files]
        title = self.get_body_argument("title", "").strip()
        items = []
        for path in paths:
            try:
                check_in_course(path, names)
            except BadLinkPath:
                self.refuse(400, "lti.picker_path", todo="lti.one_item.todo", path=repr(path), course=repr(course.name))
            label = title if title and len(paths) == 1 else (path.rsplit("/", 1)[-1] or course.name)
            items.append(deeplink.content_item(self.tool.url("launch"), course.name, path, app, label, target))
        try:
            token = deeplink.response(self.tool.keys, client_id=platform.client_id, issuer=platform.issuer,
                                      deployment_id=data["deployment"], request=request, items=items)
        except deeplink.PickRefused as error:
            self.refused(error)
        log.info("LTI deep link: %d item(s) of course %s for platform %s", len(items), course.name, platform.name)
        self.page("lti_return.html", return_url=request.return_url, token=token, count=len(items))


class JwksHandler(LtiPage):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "max-age=300")
        self.finish(json.dumps(self.tool.keys.jwks()))


class ConfigHandler(LtiPage):
    """What a platform admin pastes, and Canvas's developer-key JSON."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(registration(self.tool), indent=2) + "\n")


def registration(tool: Tool) -> dict[str, Any]:
    login, launch, jwks = tool.url("login"), tool.url("launch"), tool.url("jwks")
    host = urlsplit(tool.config.server.public_url).hostname or ""

    def placement(name: str, message_type: str, **extra: Any) -> dict[str, Any]:
        return {"placement": name, "message_type": message_type, "target_link_uri": launch, "text": "f2git", **extra}

    canvas = {
        "title": "f2git",
        "description": "Course files for students' JupyterHub: place notebooks and folders that open with nbgitpuller.",
        "oidc_initiation_url": login,
        "target_link_uri": launch,
        "public_jwk_url": jwks,
        "scopes": [NRPS_SCOPE],
        "extensions": [{
            "platform": "canvas.instructure.com",
            "domain": host,
            "privacy_level": "public",
            "settings": {"text": "f2git", "placements": [
                placement("editor_button", "LtiDeepLinkingRequest"),
                placement("link_selection", "LtiDeepLinkingRequest"),
                placement("assignment_selection", "LtiDeepLinkingRequest"),
                placement("course_navigation", "LtiResourceLinkRequest", default="disabled", visibility="admins"),
            ]},
        }],
        "custom_fields": {"canvas_course_id": "$Canvas.course.id"},
    }
    return {
        "login_url": login,
        "launch_url": launch,
        "redirect_uris": [launch],
        "deep_linking_url": launch,
        "jwks_url": jwks,
        "moodle": {"Tool URL": launch, "LTI version": "LTI 1.3", "Public key type": "Keyset URL",
                   "Public keyset": jwks, "Initiate login URL": login, "Redirection URI(s)": launch,
                   "Supports Deep Linking (Content-Item Message)": True, "Content Selection URL": launch},
        "canvas": canvas,
    }


class RequestsPage(DashboardHandler):
    """`/lti/requests`: the courses instructors asked for (provision = "ask"); managers approve."""

    root = "../"

    def initialize(self, tool: Tool) -> None:
        self.tool = tool

    def get(self) -> None:
        self.require_manage(None)
        self.render_page("lti_requests.html", requests=self.tool.requests.all())

    async def post(self) -> None:
        self.require_manage(None)
        request = await asyncio.to_thread(self.tool.requests.take, self.get_body_argument("request", ""))
        if request is None:
            raise Refusal(404, "No such request: it was approved already or never filed.")
        try:
            course = await asyncio.to_thread(provision.create, self.config, request)
        except provision.ProvisionError as error:
            await asyncio.to_thread(self.tool.requests.add, request)  # still pending: the admin fixes the cause
            raise Refusal(409, str(error)) from None
        self.refresher.add_course(course.name)
        log.info("LTI provision: %s approved course %s for %s", self.identity.name, course.name, request.key)
        self.redirect(f"../courses/{quote(course.name, safe='')}", status=303)


def routes(tool: Tool | None) -> list[tuple]:
    """The LTI routes, sharing one Tool; none without an [lti] table."""
    if tool is None:
        return []
    tool = {"tool": tool}
    return [(r"/lti/login", LoginHandler, tool), (r"/lti/launch", LaunchHandler, tool),
            (r"/lti/deep-link", DeepLinkHandler, tool), (r"/lti/jwks", JwksHandler, tool),
            (r"/lti/config", ConfigHandler, tool), (r"/lti/requests", RequestsPage, tool)]
