"""Secrets out of text: every message a source, rclone or git produces passes here before
anyone reads it (errors, logs, status files)."""
from __future__ import annotations

import re
from typing import Iterable

# The user information of any URL in a text ("https://user:token@host/…").
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret (the longest first, so none survives in part) and any URL's
    user information replaced by ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return USERINFO.sub("***@", text)
