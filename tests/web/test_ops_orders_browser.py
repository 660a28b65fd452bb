"""The console's orders in Chromium: a simulated order delivers itself, one placed with
``"simulate": false`` waits, and the operator clicks it through every step to
``delivered`` -- against ``orderflow demo`` (API with the console on, the four
services, a real Valkey and a SQLite store).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from orderflow.runtime.localserver import LocalRedisServer
from tests.web.test_browser import UI_WAIT_MS, DemoStack, browser, chromium_path, page, shot
from tests.web.test_ops_api import TOKEN

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page"]  # fixtures used by name below

STEPS = [
    # (button the operator clicks, order status then, delivery status then)
    ("Confirm →", "confirmed", "—"),
    ("Start preparing →", "preparing", "—"),
    ("Send out for delivery →", "out for delivery", "waiting"),
    ("Courier on the way →", "out for delivery", "on the way"),
    ("Delivered →", "delivered", "delivered"),
]


@pytest.fixture
def console_demo(
    chromium_path: Path,
    redis_server: LocalRedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DemoStack]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    monkeypatch.setenv("ORDERFLOW_OPERATOR_TOKEN", TOKEN)  # the demo's children inherit it
    demo = DemoStack(redis_server.url, tmp_path)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()
        client.close()


def place(url: str, **body: object) -> str:
    response = httpx.post(
        f"{url}/api/v1/orders", json={"lines": [{"item_id": "margherita", "quantity": 1}], **body}
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


def test_an_operator_moves_a_manual_order_to_delivered(console_demo: DemoStack, page: Page) -> None:
    recipient = {"name": "Ada Lovelace", "address": "12 St James's Square", "phone": "+44 20 7946"}
    manual = place(console_demo.url, simulate=False, customer=recipient)
    simulated = place(console_demo.url)
    page.goto(f"{console_demo.url}/ops")
    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("unlock").click()
    expect(page.locator("#console")).to_be_visible(timeout=UI_WAIT_MS)

    manual_row = page.locator(f'[data-testid="order-row"][data-order-id="{manual}"]')
    simulated_row = page.locator(f'[data-testid="order-row"][data-order-id="{simulated}"]')
    expect(manual_row.get_by_test_id("simulated")).to_have_text("by hand")
    expect(simulated_row.get_by_test_id("simulated")).to_have_text("simulated")
    expect(simulated_row.get_by_test_id("advance")).to_have_count(0)
    # The operator sees where the order goes (as text); an API order without details says so.
    expect(manual_row.get_by_test_id("order-recipient")).to_have_text("".join(recipient.values()))
    expect(simulated_row.get_by_test_id("order-recipient")).to_have_text("—")
    # The table refreshes by itself: the simulated order is delivered meanwhile...
    expect(simulated_row.get_by_test_id("order-status")).to_have_text(
        "delivered", timeout=UI_WAIT_MS
    )
    # ...and the other still waits at created, for the operator.
    expect(manual_row.get_by_test_id("order-status")).to_have_text("created")
    shot(page, "ops-03-orders-waiting")

    for label, status, delivery in STEPS:
        advance = manual_row.get_by_test_id("advance")
        expect(advance).to_have_text(label, timeout=UI_WAIT_MS)
        advance.click()
        expect(manual_row.get_by_test_id("order-status")).to_have_text(status, timeout=UI_WAIT_MS)
        expect(manual_row.get_by_test_id("delivery-status")).to_have_text(
            delivery, timeout=UI_WAIT_MS
        )
    expect(manual_row.get_by_test_id("advance")).to_have_count(0)
    expect(page.get_by_test_id("ops-error")).to_be_hidden()
    shot(page, "ops-04-orders-delivered")

    order = httpx.get(f"{console_demo.url}/api/v1/orders/{manual}").json()
    assert [change["status"] for change in order["history"]] == [
        "created",
        "confirmed",
        "preparing",
        "out_for_delivery",
        "delivered",
    ]
    assert [change["status"] for change in order["delivery"]["history"]] == [
        "waiting",
        "on_the_way",
        "delivered",
    ]
