"""The browser UI, driven in Debian's Chromium through Playwright, against the whole stack.

What this proves: a user opens ``/``, sees the menu with stock, fills a cart,
places the order and watches the timeline reach ``delivered`` over the
WebSocket while the real services (orders, delivery, notifications, simulator)
run in ``orderflow demo``; and when an item sells out between adding it and
ordering, the page says it is sold out and takes it out of the cart
(tests/web/test_browser_polish.py covers the rest of the recovery).

Screenshots go to ``tests/artifacts/`` (git-ignored) for a human to look at.
Playwright's own browser download is never used: ``/usr/bin/chromium`` is
Debian's package (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.sync_api import Browser, Page, expect, sync_playwright

from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import OrderStatusUpdated
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import open_store
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import LocalRedisServer
from tests.web.api_process import ApiProcess
from tests.web.checkout_form import fill_delivery_details
from tests.web.demo_stack import CHROMIUM, CHROMIUM_ARGS, UI_WAIT_MS, DemoStack, run_async

pytestmark = pytest.mark.browser
__all__ = ["UI_WAIT_MS", "DemoStack", "run_async"]  # imported from here by other browser tests

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


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


@contextmanager
def opened(
    browser: Browser, viewport: dict[str, int], scheme: str = "light", locale: str = "en-US"
) -> Iterator[Page]:
    """A fresh page at ``viewport``; JavaScript errors on it fail the test."""
    context = browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        color_scheme=scheme,  # type: ignore[arg-type]
        locale=locale,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser, {"width": 1280, "height": 900}) as page:
        yield page


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


def test_a_sold_out_item_is_called_sold_out_and_leaves_the_cart(
    stack: DemoStack, page: Page
) -> None:
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
    expect(error).to_contain_text(f"{name} is sold out")
    expect(error).not_to_contain_text("Only 0")
    expect(page.get_by_test_id("cart-line")).to_have_count(0)  # nothing left to offer
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
