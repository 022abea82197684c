"""The security headers of every answer f2git writes: tornado's responses (the transform) and the
raw refusals `connections.py` writes before a request reaches tornado."""
from __future__ import annotations

import tornado.web

# On every answer, error pages, git and static files included (SecurityHeaders adds them);
# a handler may set a stricter Content-Security-Policy of its own (the dashboard does).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders(tornado.web.OutputTransform):
    """Adds SECURITY_HEADERS to every response of the application that lacks them."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        if "frame-ancestors 'none'" not in headers.get("Content-Security-Policy", ""):
            headers.pop("X-Frame-Options", None)  # a page framed by the LMS lists its origins in the CSP
        return status_code, headers, chunk
