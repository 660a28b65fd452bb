"""Every page works under the Content-Security-Policy, offline, in Chromium.

The shop (``/``), the API documentation (``/docs``, Swagger UI from the
``swagger-ui-bundle`` package) and the operator console (``/ops``) are loaded from a
real ``orderflow api``; the browser must report no CSP violation and request nothing
from another origin (no CDN: the page works on a machine without Internet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from orderflow.runtime.localserver import LocalRedisServer
from tests.web.api_process import ApiProcess
from tests.web.checkout_form import fill_delivery_details
from tests.web.conftest import seeded_store
from tests.web.test_browser import UI_WAIT_MS, browser, chromium_path, run_async

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path"]  # fixtures used by name below

TOKEN = "csp-test-operator-token-0123456789"


@pytest.fixture(scope="module")
def api(
    chromium_path: Path, redis_server: LocalRedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    directory = tmp_path_factory.mktemp("csp")
    process = ApiProcess(
        redis_url=redis_server.url,
        store_url=run_async(seeded_store(directory)),
        log_path=directory / "api.log",
        extra_env={"ORDERFLOW_OPERATOR_TOKEN": TOKEN},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Watched:
    """A page with what its console said about the policy and where it sent requests."""

    def __init__(self, browser: Browser, origin: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.violations: list[str] = []
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        origin_netloc = urlsplit(origin).netloc
        self.page.on(
            "request",
            lambda request: (
                self.foreign.append(request.url)
                if urlsplit(request.url).scheme in ("http", "https", "ws", "wss")
                and urlsplit(request.url).netloc != origin_netloc
                else None
            ),
        )

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    def check(self) -> None:
        assert self.violations == []
        assert self.foreign == []
        assert self.errors == []


@pytest.fixture
def watched(browser: Browser, api: ApiProcess) -> Iterator[Watched]:
    watched = Watched(browser, api.url)
    try:
        yield watched
    finally:
        watched.context.close()


def test_the_shop_works_under_the_policy(api: ApiProcess, watched: Watched) -> None:
    page = watched.page
    page.goto(api.url)
    expect(page.get_by_test_id("menu-item").first).to_be_visible(timeout=UI_WAIT_MS)
    page.get_by_test_id("menu-item").first.get_by_test_id("add-to-cart").click()
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=UI_WAIT_MS
    )  # the WebSocket is allowed by connect-src 'self'
    watched.check()


def test_the_api_docs_render_offline_under_the_policy(api: ApiProcess, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{api.url}/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=UI_WAIT_MS)
    assert operations.count() >= 3  # list the menu, place an order, get an order
    expect(
        page.locator(".opblock-summary-path").filter(has_text="/api/v1/orders").first
    ).to_be_visible()
    watched.check()


def test_the_operator_console_works_under_the_policy(api: ApiProcess, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{api.url}/ops")
    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("unlock").click()
    expect(page.locator("#console")).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("stock-row").first).to_be_visible()
    watched.check()
