"""The browser UI, driven in Debian's Chromium through Playwright, against the whole stack.

What this proves: a user opens ``/``, sees the menu with stock, fills a cart,
places the order and watches the timeline reach ``delivered`` over the
WebSocket while the real services (orders, delivery, notifications, simulator)
run in ``orderflow demo``; and when an item sells out between adding it and
ordering, the page shows the API's problem ``detail`` and keeps the cart.

Screenshots go to ``tests/artifacts/`` (git-ignored) for a human to look at.
Playwright's own browser download is never used: ``/usr/bin/chromium`` is
Debian's package (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.sync_api import Browser, Page, expect, sync_playwright

from orderflow.agents.processes import ProcessSpec, ProcessTree, cli_argv
from orderflow.agents.readiness import HttpOk
from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import OrderStatusUpdated
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import open_store
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import LocalRedisServer, free_port
from tests.web.api_process import ApiProcess
from tests.web.checkout_form import fill_delivery_details
from tests.web.conftest import NO_RATE_LIMIT_ENV

pytestmark = pytest.mark.browser
T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
UI_WAIT_MS = 30_000  # a guard against hanging, not a latency assertion


class DemoStack:
    """``orderflow demo`` in a subprocess with its own data directory and port.

    Ready when the menu answers; on SIGTERM the demo stops its own children.
    """

    def __init__(self, redis_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.store_url = f"sqlite:///{data_dir / 'orderflow.db'}"
        env = {
            **os.environ,
            "ORDERFLOW_HOST": "127.0.0.1",
            "ORDERFLOW_PORT": str(self.port),
            "ORDERFLOW_REDIS_URL": redis_url,
            "ORDERFLOW_DATA_DIR": str(data_dir),
            "ORDERFLOW_STORE_URL": self.store_url,
            "ORDERFLOW_SIMULATOR_DELAY_MIN": "0.2",
            "ORDERFLOW_SIMULATOR_DELAY_MAX": "0.5",
            "ORDERFLOW_LOG_LEVEL": "WARNING",
            **NO_RATE_LIMIT_ENV,  # the session's shared Redis, one client address
        }
        demo = ProcessSpec(
            "demo",
            cli_argv("demo"),
            env=env,
            log_path=data_dir / "demo.log",
            ready=HttpOk(f"{self.url}/api/v1/menu"),
        )
        self.tree = ProcessTree([demo], grace=20.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.tree.start_ready(timeout)

    def stop(self) -> None:
        self.tree.stop()

    def set_stock(self, item_id: str, stock: int) -> None:
        """Change stock behind the page's back, as another customer's order would."""

        async def change() -> None:
            store = await open_store(self.store_url)
            try:
                await store.set_stock(item_id, stock)
            finally:
                await store.close()

        run_async(change())


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from a test that drives Playwright's sync API.

    Playwright's sync API runs an event loop in this thread, so use another one.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=30)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package 'chromium'; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(
    chromium_path: Path, redis_server: LocalRedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoStack]:
    demo = DemoStack(redis_server.url, tmp_path_factory.mktemp("browser-demo"))
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the cart is sticky: show it where it sits
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_order_from_menu_to_delivered(stack: DemoStack, page: Page) -> None:
    page.goto(stack.url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("menu-item")).to_have_count(
        len(httpx.get(f"{stack.url}/api/v1/menu").json()["items"])
    )
    stock_before = int(margherita.get_attribute("data-stock") or "-1")
    assert stock_before > 2
    expect(margherita.get_by_test_id("stock")).to_contain_text(str(stock_before))
    shot(page, "01-menu")

    margherita.get_by_role("button", name=re.compile("Add Margherita")).click()
    margherita.get_by_role("button", name=re.compile("Add Margherita")).click()
    second = page.get_by_test_id("menu-item").nth(1)
    second_name = second.locator(".dish-name").inner_text()
    second.get_by_test_id("add-to-cart").click()
    lines = page.get_by_test_id("cart-line")
    expect(lines).to_have_count(2)
    expect(lines.first.get_by_test_id("quantity")).to_have_text("2")
    lines.nth(1).get_by_test_id("increment").click()
    lines.nth(1).get_by_test_id("decrement").click()
    expect(lines.nth(1)).to_contain_text(second_name)
    expect(lines.nth(1).get_by_test_id("quantity")).to_have_text("1")
    expect(page.get_by_test_id("cart-empty")).to_be_hidden()
    shot(page, "02-cart")

    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()
    tracking = page.get_by_test_id("tracking")
    expect(tracking).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    expect(page.get_by_test_id("cart-line")).to_have_count(0)
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", re.compile("live|done"), timeout=UI_WAIT_MS
    )
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-transport", "sse")
    expect(page.get_by_test_id("order-step-preparing")).to_have_attribute(
        "data-state", re.compile("current|done"), timeout=UI_WAIT_MS
    )
    shot(page, "03-tracking")

    delivered = page.get_by_test_id("order-step-delivered")
    expect(delivered).to_have_attribute("data-state", "done", timeout=UI_WAIT_MS)
    for step in ("created", "confirmed", "preparing", "out_for_delivery"):
        expect(page.get_by_test_id(f"order-step-{step}")).to_have_attribute("data-state", "done")
    for step in ("waiting", "on_the_way", "delivered"):
        expect(page.get_by_test_id(f"delivery-step-{step}")).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("tracking-status")).to_contain_text("Delivered")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "done")
    expect(margherita).to_have_attribute("data-stock", str(stock_before - 2), timeout=UI_WAIT_MS)
    shot(page, "04-delivered")


def test_stock_updates_on_an_open_page_without_polling(stack: DemoStack, page: Page) -> None:
    menu_reads: list[str] = []
    page.on(
        "request",
        lambda request: (
            menu_reads.append(request.url) if request.url.endswith("/api/v1/menu") else None
        ),
    )
    page.goto(stack.url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("menu-status")).to_contain_text("live stock", timeout=UI_WAIT_MS)
    before = int(margherita.get_attribute("data-stock") or "-1")
    assert before > 3

    # Another customer orders (another client, not this page).
    response = httpx.post(
        f"{stack.url}/api/v1/orders",
        json={"lines": [{"item_id": "margherita", "quantity": 3}]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    expect(margherita).to_have_attribute("data-stock", str(before - 3), timeout=UI_WAIT_MS)
    expect(margherita.get_by_test_id("stock")).to_contain_text(str(before - 3))
    shot(page, "05-live-stock")
    assert len(menu_reads) == 1, menu_reads  # read once on load; the rest was pushed


def test_tracking_falls_back_to_the_websocket_without_eventsource(
    stack: DemoStack, page: Page
) -> None:
    page.add_init_script("delete window.EventSource;")
    page.goto(stack.url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    margherita.get_by_test_id("add-to-cart").click()
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()
    connection = page.get_by_test_id("connection-state")
    expect(connection).to_have_attribute("data-transport", "websocket", timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-step-delivered")).to_have_attribute(
        "data-state", "done", timeout=UI_WAIT_MS
    )


def test_out_of_stock_order_shows_the_problem_detail(stack: DemoStack, page: Page) -> None:
    page.goto(stack.url)
    tiramisu = page.get_by_test_id("menu-item").last
    expect(tiramisu).to_be_visible(timeout=UI_WAIT_MS)
    item_id = tiramisu.get_attribute("data-item-id")
    name = tiramisu.locator(".dish-name").inner_text()
    assert item_id
    tiramisu.get_by_test_id("add-to-cart").click()
    expect(page.get_by_test_id("cart-line")).to_have_count(1)

    stack.set_stock(item_id, 0)  # someone else bought the last one
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()

    error = page.get_by_test_id("order-error")
    expect(error).to_be_visible(timeout=UI_WAIT_MS)
    expect(error).to_contain_text(name)
    expect(error).to_contain_text("Only 0")
    expect(page.get_by_test_id("cart-line")).to_have_count(1)  # the cart is kept
    expect(page.get_by_test_id("tracking")).to_be_hidden()
    expect(tiramisu.get_by_test_id("stock")).to_have_text("Sold out", timeout=UI_WAIT_MS)
    shot(page, "07-out-of-stock")


def test_tracking_reconnects_after_the_gateway_restarts(
    chromium_path: Path, redis_server: LocalRedisServer, page: Page, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'orderflow.db'}"

    async def new_order() -> str:
        store = await open_store(store_url)
        try:
            await store.seed_menu(DEMO_MENU)
            result = await store.place_order(
                [OrderLineRequest(item_id=DEMO_MENU[0].id, quantity=1)],
                idempotency_key=None,
                request_hash=None,
                events=lambda order: [],
            )
            return result.order.id
        finally:
            await store.close()

    async def confirm_in_store(order_id: str) -> None:
        store = await open_store(store_url)
        try:
            assert (await store.update_order_status(order_id, "confirmed", utc_now())).changed
        finally:
            await store.close()

    async def publish_preparing(order_id: str) -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            value = OrderStatusUpdated(
                order_id=order_id, status="preparing", at=utc_now(), previous="confirmed"
            )
            fields: Any = Envelope.new(value, source="test-browser").to_fields()
            await client.xadd("orders-stream", fields)
        finally:
            await client.aclose()

    order_id = run_async(new_order())
    gateway = ApiProcess(
        redis_url=redis_server.url, store_url=store_url, log_path=tmp_path / "gateway.log"
    )
    gateway.start()
    try:
        page.goto(f"{gateway.url}/#order={order_id}")
        connection = page.get_by_test_id("connection-state")
        expect(connection).to_have_attribute("data-state", "live", timeout=UI_WAIT_MS)
        expect(page.get_by_test_id("order-step-created")).to_have_attribute("data-state", "current")

        expect(connection).to_have_attribute("data-transport", "sse")
        gateway.stop()  # the stream drops; the page keeps trying
        expect(connection).to_have_attribute("data-state", "reconnecting", timeout=UI_WAIT_MS)
        run_async(confirm_in_store(order_id))  # happens while the page is disconnected
        shot(page, "06-reconnecting")

        gateway = ApiProcess(
            redis_url=redis_server.url,
            store_url=store_url,
            log_path=tmp_path / "gateway-again.log",
            port=gateway.port,
        )
        gateway.start()
        expect(connection).to_have_attribute("data-state", "live", timeout=UI_WAIT_MS)
        # The resumed stream (Last-Event-ID) brings what happened while disconnected ...
        expect(page.get_by_test_id("order-step-confirmed")).to_have_attribute(
            "data-state", "current", timeout=UI_WAIT_MS
        )
        # ... and live updates flow again.
        run_async(publish_preparing(order_id))
        expect(page.get_by_test_id("order-step-preparing")).to_have_attribute(
            "data-state", "current", timeout=UI_WAIT_MS
        )
    finally:
        gateway.stop()
