"""Driving the dashboard over HTTP in tests: its XSRF token and its server-sent events."""
from __future__ import annotations

import json
import queue
import re

import requests


def xsrf(session: requests.Session, page_url: str) -> str:
    page = session.get(page_url)
    assert page.status_code == 200, page.text
    return re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)


def read_events(session: requests.Session, url: str, into: "queue.Queue[dict] | list[dict]") -> None:
    """The server-sent events of `url`, as they arrive, until the server ends the stream."""
    put = into.put if isinstance(into, queue.Queue) else into.append
    with session.get(url, stream=True, timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        for line in answer.iter_lines(chunk_size=1, decode_unicode=True):
            if line.startswith("data: "):
                put(json.loads(line[len("data: "):]))


def events(session: requests.Session, url: str) -> list[dict]:
    seen: list[dict] = []
    read_events(session, url, seen)
    return seen
