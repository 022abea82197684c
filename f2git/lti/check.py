"""`f2git check` for `[lti]`: the tool key can be read, and each platform's key set answers."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .keys import KeyFileError, ToolKeys
from .platform_keys import KeySetError, PlatformKeys, parse_key_set

if TYPE_CHECKING:
    from f2git.config import LtiConfig


def check(lti: "LtiConfig") -> list[tuple[bool, str]]:
    """(ok, line) per finding; never creates the key (that is `serve`'s first start)."""
    lines: list[tuple[bool, str]] = []
    if not lti.key_file.exists():
        lines.append((True, f"lti: tool key {lti.key_file} will be created (0600) when f2git serve first starts"))
    else:
        try:
            keys = ToolKeys.for_config(lti, create=False)
            lines.append((True, f"lti: tool key ok (kid {keys.signing.kid}, {len(keys.jwks()['keys'])} published)"))
        except KeyFileError as error:
            lines.append((False, f"lti: FAILED: {error}"))
    if not lti.platforms:
        lines.append((False, "lti: FAILED: no [[lti.platforms]]: no LMS can launch f2git"))
    lines += asyncio.run(_platforms(lti))
    return lines


async def _platforms(lti: "LtiConfig") -> list[tuple[bool, str]]:
    reader = PlatformKeys()
    lines = []
    for platform in lti.platforms:
        try:
            found = parse_key_set(await reader.fetch(platform.key_set_url), platform.key_set_url)
            lines.append((True, f"lti platform {platform.name}: ok (key set with {len(found)} key(s))"))
        except KeySetError as error:
            lines.append((False, f"lti platform {platform.name}: FAILED: {error}"))
    return lines
