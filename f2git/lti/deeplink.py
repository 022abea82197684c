"""Deep Linking 2.0: what the picker may offer, the content items it returns, the signed response.

Content items are `ltiResourceLink`s back to f2git's launch URL; the course, path, app and
presentation travel as custom parameters, so every student's click is a launch f2git checks.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import Refused
from .launch import DL, LTI

if TYPE_CHECKING:
    from .keys import ToolKeys

RESPONSE_TTL = 300  # s: the platform reads the response at once
TARGETS = ("window", "iframe")  # presentations f2git offers; "window" opens a new tab (JupyterLab needs the room)


PickRefused = Refused


@dataclass(frozen=True)
class Request:
    """What the platform's deep-linking request allows (its deep_linking_settings)."""

    return_url: str
    accept_multiple: bool
    accept_types: tuple[str, ...]
    targets: tuple[str, ...]  # of TARGETS, in f2git's order of preference
    data: Any  # echoed unchanged; None: the request had none

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "Request":
        accept_types = tuple(str(t) for t in settings.get("accept_types") or ())
        if "ltiResourceLink" not in accept_types:
            raise PickRefused(400, "lti.no_links_here")
        offered = settings.get("accept_presentation_document_targets") or ()
        targets = tuple(t for t in TARGETS if t in offered)
        return cls(return_url=settings["deep_link_return_url"], accept_multiple=bool(settings.get("accept_multiple")),
                   accept_types=accept_types, targets=targets, data=settings.get("data"))

    def to_json(self) -> dict[str, Any]:
        return {"return_url": self.return_url, "accept_multiple": self.accept_multiple,
                "accept_types": list(self.accept_types), "targets": list(self.targets), "data": self.data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Request":
        return cls(data["return_url"], data["accept_multiple"], tuple(data["accept_types"]),
                   tuple(data["targets"]), data["data"])


def content_item(launch_url: str, course: str, path: str, app: str, title: str, target: str) -> dict[str, Any]:
    """One `ltiResourceLink` to f2git for `path` of `course` opened in `app`."""
    item: dict[str, Any] = {
        "type": "ltiResourceLink",
        "title": title,
        "url": launch_url,
        "custom": {"f2git_course": course, "f2git_path": path, "f2git_app": app, "f2git_target": target or "window"},
    }
    if target == "window":
        item["window"] = {"targetName": "_blank"}
    elif target == "iframe":
        item["iframe"] = {"width": 1200, "height": 800}
    return item


def response(keys: "ToolKeys", *, client_id: str, issuer: str, deployment_id: str, request: Request,
             items: list[dict[str, Any]]) -> str:
    """The signed `LtiDeepLinkingResponse`: iss = client_id, aud = the platform, data echoed."""
    if len(items) > 1 and not request.accept_multiple:
        raise PickRefused(400, "lti.one_item")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id, "aud": issuer, "iat": now, "exp": now + RESPONSE_TTL, "nonce": secrets.token_urlsafe(16),
        LTI + "deployment_id": deployment_id,
        LTI + "message_type": "LtiDeepLinkingResponse",
        LTI + "version": "1.3.0",
        DL + "content_items": items,
    }
    if request.data is not None:
        claims[DL + "data"] = request.data
    return keys.sign(claims)
