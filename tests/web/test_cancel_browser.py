"""Cancelling from the tracking card, in Debian's Chromium through Playwright.

A real ``orderflow api`` process (its own SQLite store, the session's Valkey) and no
workers: an order placed from the page stays ``created`` until the test moves it, so
each moment of the cancel story is set up exactly, without racing a simulator. What
the page shows comes over its real event streams: the order's (``order.cancelled.v1``)
and the menu's (``stock.changed.v1``, both published by the cancel's outbox).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from orderflow.agents.messages import order_status_messages
from orderflow.agents.outbox import relay_once
from orderflow.models.documents import utc_now
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import no_events, open_store
from orderflow.runtime import App
from orderflow.runtime.localserver import LocalRedisServer
from tests.web.api_process import ApiProcess
from tests.web.checkout_form import fill_delivery_details
from tests.web.test_browser import UI_WAIT_MS, browser, chromium_path, page, run_async, shot
from tests.web.test_ops_api import TOKEN

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page"]  # fixtures used by name below


class Gateway:
    def __init__(self, redis_url: str, directory: Path) -> None:
        self.redis_url = redis_url
        self.store_url = f"sqlite:///{directory / 'orderflow.db'}"
        run_async(self._seed())
        self.api = ApiProcess(
            redis_url=redis_url,
            store_url=self.store_url,
            log_path=directory / "api.log",
            extra_env={"ORDERFLOW_OPERATOR_TOKEN": TOKEN},  # the console, for its test
        )

    async def _seed(self) -> None:
        store = await open_store(self.store_url)
        try:
            await store.seed_menu(DEMO_MENU)
        finally:
            await store.close()

    def move_in_store(self, order_id: str, *statuses: str, announce: bool = False) -> None:
        """What the orders worker does with reports of ``statuses``; with ``announce``
        their ``order.status_updated.v1`` are published too (by the outbox relay), so
        the page hears of them, else only the store knows."""

        async def move() -> None:
            store = await open_store(self.store_url)
            publisher = App("test-kitchen", broker=self.redis_url)
            await publisher.connect()
            events = functools.partial(order_status_messages, cause=ByHand())
            try:
                for status in statuses:
                    change = await store.update_order_status(
                        order_id, status, utc_now(), events if announce else no_events
                    )
                    assert change.changed
                if announce:
                    # The API's own rows of the order may still wait for its deferred
                    # "published" marks (docs/system.md, the outbox in detail): the relay
                    # takes them too, as no-ops (once-only publish), so at least ours.
                    assert await relay_once(publisher, store, min_age_seconds=0) >= len(statuses)
                    assert await store.outbox_pending(min_age_seconds=0) == []
            finally:
                await publisher.stop()
                await store.close()

        run_async(move())


@dataclass(frozen=True)
class ByHand:
    """The cause of a status moved by the test (what a handled event is to a worker)."""

    correlation_id: str | None = None
    event_id: str = "0" * 32


@pytest.fixture(scope="module")
def gateway(
    chromium_path: Path,
    redis_server: LocalRedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    gateway = Gateway(redis_server.url, tmp_path_factory.mktemp("cancel-browser"))
    gateway.api.start()
    try:
        yield gateway
    finally:
        gateway.api.stop()


def place_from_the_page(page: Page, gateway: Gateway, quantity: int = 1) -> str:
    page.goto(gateway.api.url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("menu-status")).to_contain_text("live stock", timeout=UI_WAIT_MS)
    for _ in range(quantity):
        margherita.get_by_role("button", name=re.compile("Add Margherita")).click()
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=UI_WAIT_MS
    )
    order_id = page.get_by_test_id("order-id").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", order_id)
    return order_id


def test_place_cancel_see_cancelled_and_the_stock_back(
    gateway: Gateway,
    page: Page,
) -> None:
    page.goto(gateway.api.url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    before = int(margherita.get_attribute("data-stock") or "-1")
    assert before > 2

    order_id = place_from_the_page(page, gateway, quantity=2)
    expect(margherita).to_have_attribute("data-stock", str(before - 2), timeout=UI_WAIT_MS)
    cancel = page.get_by_test_id("cancel-order")
    expect(cancel).to_be_visible()
    cancel.click()
    confirm = page.get_by_test_id("confirm-cancel")
    expect(confirm).to_be_focused()
    page.get_by_test_id("keep-order").click()  # changed their mind: nothing happens
    expect(cancel).to_be_visible()
    expect(cancel).to_be_focused()
    assert httpx.get(f"{gateway.api.url}/api/v1/orders/{order_id}").json()["status"] == "created"

    cancel.click()
    confirm.click()

    step = page.get_by_test_id("order-step-cancelled")
    expect(step).to_be_visible(timeout=UI_WAIT_MS)
    expect(step).to_have_attribute("data-state", "cancelled")
    expect(page.get_by_test_id("order-step-created")).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("order-step-preparing")).to_have_attribute("data-state", "skipped")
    expect(page.get_by_test_id("tracking-status")).to_contain_text("cancelled")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "cancelled")
    expect(cancel).to_be_hidden()
    expect(page.get_by_test_id("cancel-error")).to_be_hidden()
    # The stock is back on the menu, pushed over the menu's event stream.
    expect(margherita).to_have_attribute("data-stock", str(before), timeout=UI_WAIT_MS)
    shot(page, "08-cancelled")
    order = httpx.get(f"{gateway.api.url}/api/v1/orders/{order_id}").json()
    assert order["status"] == "cancelled"

    page.reload()  # the link still says cancelled, from the snapshot
    expect(page.get_by_test_id("order-step-cancelled")).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("cancel-order")).to_be_hidden()


def test_the_button_goes_once_preparing_arrives(
    gateway: Gateway,
    page: Page,
) -> None:
    order_id = place_from_the_page(page, gateway)
    expect(page.get_by_test_id("cancel-order")).to_be_visible()
    gateway.move_in_store(order_id, "confirmed", "preparing", announce=True)
    expect(page.get_by_test_id("order-step-preparing")).to_have_attribute(
        "data-state", "current", timeout=UI_WAIT_MS
    )
    expect(page.get_by_test_id("cancel-order")).to_be_hidden()


def test_too_late_is_said_plainly(
    gateway: Gateway,
    page: Page,
) -> None:
    order_id = place_from_the_page(page, gateway)
    # The kitchen starts while the page still shows "created" (the event is not out yet).
    gateway.move_in_store(order_id, "confirmed", "preparing")
    page.get_by_test_id("cancel-order").click()
    page.get_by_test_id("confirm-cancel").click()

    error = page.get_by_test_id("cancel-error")
    expect(error).to_be_visible(timeout=UI_WAIT_MS)
    expect(error).to_contain_text("already preparing")
    expect(error).to_contain_text("can no longer be cancelled")
    expect(page.get_by_test_id("cancel-order")).to_be_hidden()
    expect(page.get_by_test_id("order-step-cancelled")).to_have_count(0)
    shot(page, "09-cancel-too-late")
    assert httpx.get(f"{gateway.api.url}/api/v1/orders/{order_id}").json()["status"] == "preparing"


def test_the_console_shows_a_cancelled_order_and_offers_no_step(
    gateway: Gateway, page: Page
) -> None:
    response = httpx.post(
        f"{gateway.api.url}/api/v1/orders",
        json={"lines": [{"item_id": "diavola", "quantity": 1}], "simulate": False},
    )
    order_id = response.json()["id"]
    assert httpx.post(f"{gateway.api.url}/api/v1/orders/{order_id}/cancel").status_code == 200
    page.goto(f"{gateway.api.url}/ops")
    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("unlock").click()
    row = page.locator(f'[data-testid="order-row"][data-order-id="{order_id}"]')
    expect(row.get_by_test_id("order-status")).to_have_text("cancelled", timeout=UI_WAIT_MS)
    expect(row.get_by_test_id("cancelled")).to_contain_text("cancelled by the customer")
    expect(row.get_by_test_id("advance")).to_have_count(0)
