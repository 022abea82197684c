"""`GET /metrics` for Prometheus: the server's own registry (f2git.metrics)."""
from __future__ import annotations

from .base import BaseHandler, Refusal


class MetricsHandler(BaseHandler):
    """Prometheus scrapes with a token (`authorization` in its scrape config) that may manage
    f2git or, with `auth = "jupyterhub"`, holds the hub's `read:metrics` scope."""

    def get(self) -> None:
        if not self.auth.may_read_metrics(self.identity):
            raise Refusal(403, f"{self.identity.name} may not read f2git's metrics")
        content_type, body = self.settings["f2git_metrics"].exposition()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


ROUTES = [(r"/metrics", MetricsHandler)]
