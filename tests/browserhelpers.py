"""Debian's Chromium for the browser tests (Playwright drives it, never a downloaded
browser: `executable_path=CHROMIUM, args=CHROMIUM_ARGS`) and the demo course they serve
(examples/demo-course)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from playwright.sync_api import Browser, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-course"

# Playwright's assertions retry for 5 s by default: too short for Chromium on two busy cores
# (CI runs hubs, git herds and browsers in one suite). A passing page passes at once anyway.
expect.set_options(timeout=20_000)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for one module's tests."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
