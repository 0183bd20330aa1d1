"""A real headless browser: Playwright for Python driving Debian's chromium (Playwright's own browser
download is not reachable here, so it is pointed at the system binary)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("TENSORGATE_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing of the browser's own that calls home (updates, sync, safe browsing lists...).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Set to a folder (e.g. docs/img) to keep the screenshots the tests take; otherwise they go to tmp.
SCREENSHOTS_ENV = "TENSORGATE_SCREENSHOTS"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test module; each test opens its own context (fresh storage and cookies)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        # launch() gives every browser a fresh temporary user-data-dir of its own
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class Offline:
    """Watches a browser context: every request must go to loopback; anything else is aborted and kept."""

    def __init__(self, context: Any) -> None:
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.blocked_by_policy: list[str] = []  # stopped by the page's Content-Security-Policy: never sent
        self.requests: list[str] = []
        context.route("**/*", self._route)
        context.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        if request.failure == "csp":
            self.blocked_by_policy.append(request.url)
        else:
            self.failed.append(f"{request.url} {request.failure}")

    def _route(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def check(self) -> None:
        assert self.outside == [], f"the page tried to leave the machine: {self.outside}"


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
