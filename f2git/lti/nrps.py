"""LTI Names and Role Provisioning Services (NRPS 2.0): a context's roster, for any course that
names its LMS contexts in `lti_contexts`, whatever its source.

The memberships URL comes from a launch (`ContextStore`); the access token from the platform's
token endpoint by OAuth 2 client credentials with a JWT assertion signed by the tool key
(LTI Security Framework 1.0, section 4.1); the membership container's pages from `Link` headers.
Only members with status Active (the default when absent) count.
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from connectors._http import SourceSession
from connectors.base import AuthError, SourceError
from connectors.roster import (ACTIVE, DELETED, INACTIVE, INSTRUCTOR, LEARNER, OBSERVER, OTHER, TA, Enrolment,
                               RosterCollector, hub_name)

from .contexts import ContextStore
from .keys import KeyFileError, ToolKeys

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig, PlatformConfig

SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
CONTAINER = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # s
# Context roles (LIS vocabulary, full URI or the deprecated short name); sub-roles name their own.
ROLE_NAMES = {"Learner": LEARNER, "Instructor": INSTRUCTOR, "ContentDeveloper": INSTRUCTOR,
              "TeachingAssistant": TA, "Mentor": OBSERVER}
STATUSES = {"active": ACTIVE, "inactive": INACTIVE, "deleted": DELETED}

_tokens: dict[tuple[str, str], tuple[float, str]] = {}  # (token URL, client_id) -> (expiry, token)
_tokens_lock = threading.Lock()


def role_of(uri: Any) -> str:
    """`…/membership#Learner`, `…/membership/Instructor#TeachingAssistant` or `Learner` → a roster role."""
    text = str(uri)
    name = text.rsplit("#", 1)[-1] if "#" in text else text.rsplit("/", 1)[-1]
    return ROLE_NAMES.get(name, OTHER)


def platform_and_context(config: "Config", context: str) -> tuple["PlatformConfig", str]:
    lti = config.lti
    if lti is None or not lti.platforms:
        raise SourceError("LTI: lti_contexts needs an [lti] table with its platform")
    if len(lti.platforms) == 1:
        return lti.platforms[0], context
    name, _, context_id = context.partition("/")
    platform = lti.platform(name)
    if platform is None:
        raise SourceError(f"LTI: no platform named {name!r}")
    return platform, context_id


def access_token(config: "Config", platform: "PlatformConfig") -> str:
    """A bearer token for NRPS, reused until shortly before it expires."""
    if not platform.auth_token_url:
        raise SourceError(f"LTI platform {platform.name}: auth_token_url is not set, so f2git cannot read rosters")
    key = (platform.auth_token_url, platform.client_id)
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached and cached[0] > time.time():
            return cached[1]
    now = int(time.time())
    try:
        keys = ToolKeys.for_config(config.lti)
    except KeyFileError as error:
        raise SourceError(f"LTI: {error}") from None
    assertion = keys.sign({
        "iss": platform.client_id, "sub": platform.client_id, "aud": platform.auth_token_url,
        "iat": now, "exp": now + ASSERTION_LIFETIME, "jti": secrets.token_urlsafe(16)})
    session = SourceSession(f"LTI platform {platform.name}", platform.auth_token_url, secrets=(assertion,))
    try:
        response = session.request("POST", platform.auth_token_url, data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "scope": SCOPE})
        data = session.json_body(response)
    except AuthError:
        raise AuthError(f"LTI platform {platform.name}: the token endpoint refused f2git's client credentials;"
                        " is the tool's JWKS URL registered, and the NRPS scope granted?") from None
    finally:
        session.session.close()
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise SourceError(f"LTI platform {platform.name}: the token endpoint answered without an access_token")
    try:
        lifetime = float(data.get("expires_in") or 3600)
    except (TypeError, ValueError):
        lifetime = 3600.0
    with _tokens_lock:
        _tokens[key] = (time.time() + max(0.0, lifetime - 60), token)
    return token


def read_context(config: "Config", platform: "PlatformConfig", context_id: str, field: str,
                 collected: RosterCollector) -> None:
    record = ContextStore.for_config(config).get(platform.name, context_id)
    if record is None or not record.memberships_url:
        raise SourceError(f"LTI: no launch from context {context_id!r} of {platform.name} has told f2git its"
                          " roster URL yet (NRPS); launch f2git once from that course in the LMS")
    token = access_token(config, platform)
    session = SourceSession(f"LTI platform {platform.name}", record.memberships_url, secrets=(token,),
                            headers={"Authorization": f"Bearer {token}", "Accept": CONTAINER})
    try:
        for page in session.link_pages(record.memberships_url):
            members = page.get("members") if isinstance(page, dict) else None
            if not isinstance(members, list):
                raise session.fail("the memberships answer has no members list")
            for member in members:
                if not isinstance(member, dict) or not member.get("user_id"):
                    raise session.fail("a member without user_id")
                state = STATUSES.get(str(member.get("status") or "Active").lower(), INACTIVE)
                roles = list(dict.fromkeys(role_of(r) for r in member.get("roles") or ())) or [OTHER]
                for role in roles:
                    collected.add(Enrolment(f"{platform.name}/{member['user_id']}", hub_name(member.get(field)),
                                            role, state), field_present=field in member)
    finally:
        session.session.close()


def read_course_roster(config: "Config", course: "CourseConfig") -> list[Enrolment]:
    """The union of the rosters of the course's `lti_contexts`."""
    if not course.lti_contexts:
        raise SourceError(f"course {course.name}: members = \"lms\" needs lti_contexts for a {course.source} source")
    claim = course.hub_username or (config.lti.username_claim if config.lti else "sub")
    field = "user_id" if claim == "sub" else claim  # the id_token's sub is NRPS's user_id
    collected = RosterCollector("LTI")
    for context in course.lti_contexts:
        platform, context_id = platform_and_context(config, context)
        read_context(config, platform, context_id, field, collected)
    if collected.field_hidden():
        raise SourceError(f"LTI: the platform sends no {field!r} in its member records (hub_username);"
                          " allow it to share that field with the tool, or pick another")
    return collected.enrolments
