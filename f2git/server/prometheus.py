"""`GET /metrics` for Prometheus: the server's own registry (f2git.metrics), for managers only."""
from __future__ import annotations

from .base import BaseHandler


class MetricsHandler(BaseHandler):
    """Prometheus scrapes with a token (`authorization` in its scrape config) that may manage f2git."""

    def get(self) -> None:
        self.require_manage(None)
        content_type, body = self.settings["f2git_metrics"].exposition()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


ROUTES = [(r"/metrics", MetricsHandler)]
