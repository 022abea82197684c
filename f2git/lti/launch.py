"""An id_token from a platform, verified into a `Launch` (LTI Core 1.3, 1EdTech Security Framework).

Every check that fails raises `LaunchRefused` naming the words for the person who launched (a
topic of f2git.words); the token itself never appears in them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from . import Refused
from .platform_keys import KeySetError, PlatformKeys

if TYPE_CHECKING:
    from f2git.config import LtiConfig, PlatformConfig

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
RESOURCE_LINK = "LtiResourceLinkRequest"
DEEP_LINKING = "LtiDeepLinkingRequest"
MESSAGE_TYPES = (RESOURCE_LINK, DEEP_LINKING)
LEEWAY = 60  # s of clock difference tolerated on exp/iat
MAX_AGE = 3600  # s: an id_token issued longer ago than this is refused even if its exp says otherwise
MAX_TOKEN = 64 * 1024  # characters: an id_token is a few KiB

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
# Context roles that may place content and manage the course (LTI Core 1.3 A.2.3); TAs are a sub-role.
TEACHING_ROLES = frozenset({MEMBERSHIP + "Instructor", MEMBERSHIP + "ContentDeveloper", MEMBERSHIP + "Administrator",
                            "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"})


LaunchRefused = Refused
RELAUNCH, ADMIN = "lti.relaunch.todo", "lti.admin.todo"  # shared sentences of what to do


@dataclass(frozen=True)
class Launch:
    platform: "PlatformConfig"
    claims: dict[str, Any] = field(repr=False)

    @property
    def message_type(self) -> str:
        return self.claims[LTI + "message_type"]

    @property
    def deployment_id(self) -> str:
        return self.claims[LTI + "deployment_id"]

    @property
    def sub(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(role for role in self.claims.get(LTI + "roles", []) if isinstance(role, str))

    @property
    def teaches(self) -> bool:
        return bool(self.roles & TEACHING_ROLES)

    def _object(self, name: str) -> dict[str, Any]:
        value = self.claims.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def context_id(self) -> str:
        value = self._object(LTI + "context").get("id")
        return value if isinstance(value, str) else ""

    @property
    def context_title(self) -> str:
        context = self._object(LTI + "context")
        return str(context.get("title") or context.get("label") or "")

    @property
    def custom(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._object(LTI + "custom").items()}

    @property
    def document_target(self) -> str:
        return str(self._object(LTI + "launch_presentation").get("document_target") or "")

    @property
    def return_url(self) -> str:
        return str(self._object(LTI + "launch_presentation").get("return_url") or "")

    @property
    def memberships_url(self) -> str:
        return str(self._object(NRPS).get("context_memberships_url") or "")

    @property
    def deep_linking(self) -> dict[str, Any]:
        return self._object(DL + "deep_linking_settings")

    def claim(self, name: str) -> str:
        """A claim's text (for `username_claim`), read as ltiauthenticator's `username_key`:
        "custom_x" is the custom parameter x, else a top-level claim."""
        if name.startswith("custom_"):
            return self.custom.get(name[len("custom_"):], "")
        value = self.claims.get(name, "")
        return value if isinstance(value, str) else str(value)


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of `token`, unverified: only to pick the platform and the key."""
    if not token or len(token) > MAX_TOKEN:
        raise LaunchRefused(400, "lti.no_token", todo=RELAUNCH)
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise LaunchRefused(400, "lti.not_jwt", todo=RELAUNCH) from None
    return header, claims


def find_platform(lti: "LtiConfig", claims: dict[str, Any]) -> "PlatformConfig":
    """The registration the token names by issuer and audience (Canvas cloud: one issuer, many client ids)."""
    issuer = claims.get("iss")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    candidates = [p for p in lti.platforms if p.issuer == issuer]
    if not candidates:
        raise LaunchRefused(403, "lti.unknown_platform")
    for platform in candidates:
        if platform.client_id in audiences:
            return platform
    raise LaunchRefused(403, "lti.audience", todo=ADMIN)


async def verify(lti: "LtiConfig", token: str, keys: PlatformKeys, nonce: str) -> Launch:
    """The verified launch in `token`; LaunchRefused for every check that fails."""
    header, claims = unverified(token)
    platform = find_platform(lti, claims)
    if header.get("alg") != "RS256":
        raise LaunchRefused(403, "lti.alg", todo=ADMIN)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise LaunchRefused(403, "lti.no_kid", todo=ADMIN)
    try:
        key = await keys.key(platform.key_set_url, kid)
    except KeySetError as error:
        raise LaunchRefused(403, "lti.keyset", reason=str(error)) from None
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=platform.client_id,
                            issuer=platform.issuer, leeway=LEEWAY,
                            options={"require": ["exp", "iat", "iss", "aud", "nonce"]})
    except jwt.ExpiredSignatureError:
        raise LaunchRefused(403, "lti.expired", todo=RELAUNCH) from None
    except jwt.InvalidSignatureError:
        raise LaunchRefused(403, "lti.signature", todo=ADMIN) from None
    except jwt.PyJWTError as error:
        raise LaunchRefused(403, "lti.invalid", todo=ADMIN, reason=str(error)) from None
    check_claims(platform, claims, nonce)
    return Launch(platform, claims)


def check_claims(platform: "PlatformConfig", claims: dict[str, Any], nonce: str) -> None:
    if claims["iat"] > time.time() + LEEWAY or claims["iat"] < time.time() - MAX_AGE:
        raise LaunchRefused(403, "lti.iat")
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 or "azp" in claims:
        if claims.get("azp") != platform.client_id:
            raise LaunchRefused(403, "lti.azp", todo=ADMIN)
    if claims["nonce"] != nonce:
        raise LaunchRefused(403, "lti.nonce", todo=RELAUNCH)
    if claims.get(LTI + "version") != "1.3.0":
        raise LaunchRefused(400, "lti.version", todo=ADMIN)
    message_type = claims.get(LTI + "message_type")
    if message_type not in MESSAGE_TYPES:
        raise LaunchRefused(400, "lti.message_type", todo=ADMIN, type=repr(str(message_type)[:60]))
    deployment = claims.get(LTI + "deployment_id")
    if not isinstance(deployment, str) or not deployment:
        raise LaunchRefused(400, "lti.no_deployment", todo=ADMIN)
    if platform.deployment_ids and deployment not in platform.deployment_ids:
        raise LaunchRefused(403, "lti.deployment", deployment=repr(deployment[:80]))
    roles = claims.get(LTI + "roles")
    if not isinstance(roles, list):
        raise LaunchRefused(400, "lti.no_roles", todo=ADMIN)
    if not isinstance(claims.get("sub", ""), str):
        raise LaunchRefused(400, "lti.sub", todo=ADMIN)
    if message_type == RESOURCE_LINK:
        link = claims.get(LTI + "resource_link")
        if not isinstance(link, dict) or not link.get("id"):
            raise LaunchRefused(400, "lti.no_link", todo=ADMIN)
    else:
        settings = claims.get(DL + "deep_linking_settings")
        if not isinstance(settings, dict) or not isinstance(settings.get("deep_link_return_url"), str):
            raise LaunchRefused(400, "lti.no_return", todo=ADMIN)
