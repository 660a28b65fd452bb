"""The operator console in Chromium: sign in, watch streams, handle a dead letter, set
stock, find an order, sign out — against ``orderflow api`` with a token, a real Valkey
and a SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from orderflow.runtime.localserver import LocalRedisServer
from tests.web.api_process import ApiProcess
from tests.web.conftest import seeded_store
from tests.web.test_browser import UI_WAIT_MS, browser, chromium_path, page, run_async, shot
from tests.web.test_ops_api import TOKEN, add_dead_letter

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page"]  # fixtures used by name below


@pytest.fixture
def console_api(
    chromium_path: Path, redis_server: LocalRedisServer, tmp_path: Path
) -> Iterator[ApiProcess]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    store_url = run_async(seeded_store(tmp_path))
    api = ApiProcess(
        redis_url=redis_server.url,
        store_url=store_url,
        log_path=tmp_path / "api.log",
        extra_env={"ORDERFLOW_OPERATOR_TOKEN": TOKEN},
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()
        client.close()


def add_letter(url: str) -> str:
    async def add() -> str:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        try:
            return await add_dead_letter(client)
        finally:
            await client.aclose()

    return run_async(add())


def test_an_operator_works_through_the_console(
    console_api: ApiProcess, redis_server: LocalRedisServer, page: Page
) -> None:
    letter = add_letter(redis_server.url)
    page.goto(f"{console_api.url}/ops")

    page.get_by_test_id("token").fill("not the token")
    page.get_by_test_id("unlock").click()
    expect(page.get_by_test_id("ops-error")).to_contain_text("not valid", timeout=UI_WAIT_MS)
    expect(page.locator("#console")).to_be_hidden()

    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("unlock").click()
    expect(page.locator("#console")).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("ops-error")).to_be_hidden()
    streams = page.get_by_test_id("streams")
    expect(streams.locator('tr[data-stream="dead-letters"]')).to_be_visible()
    expect(page.get_by_test_id("dead-total")).to_have_text("(1)")
    shot(page, "ops-01-signed-in")

    row = page.locator(f'[data-testid="dead-letter"][data-id="{letter}"]')
    row.get_by_test_id("show").click()
    expect(page.get_by_test_id("dead-detail")).to_contain_text('"error_message": "boom"')
    row.get_by_test_id("replay").click()
    expect(page.get_by_test_id("dead-letter")).to_have_count(0, timeout=UI_WAIT_MS)
    expect(streams.locator('tr[data-stream="orders-stream"]')).to_be_visible(timeout=UI_WAIT_MS)

    stock_row = page.locator('[data-testid="stock-row"][data-item-id="margherita"]')
    stock_row.get_by_test_id("stock-input").fill("7")
    stock_row.get_by_test_id("save-stock").click()
    menu_url = f"{console_api.url}/api/v1/menu"

    def margherita_stock() -> int:
        items = httpx.get(menu_url).json()["items"]
        return int(next(item["stock"] for item in items if item["id"] == "margherita"))

    expect(stock_row.get_by_test_id("stock-input")).to_have_value("7", timeout=UI_WAIT_MS)
    assert margherita_stock() == 7
    stock_row.get_by_test_id("stock-input").fill("-3")
    stock_row.get_by_test_id("save-stock").click()
    expect(page.get_by_test_id("ops-error")).to_contain_text("whole number")
    assert margherita_stock() == 7

    order = httpx.post(
        f"{console_api.url}/api/v1/orders",
        json={"lines": [{"item_id": "margherita", "quantity": 1}]},
    ).json()
    page.get_by_test_id("order-id").fill(order["id"])
    page.get_by_test_id("find").click()
    expect(page.get_by_test_id("order-detail")).to_contain_text(order["id"], timeout=UI_WAIT_MS)
    shot(page, "ops-02-order")

    page.get_by_test_id("logout").click()
    expect(page.locator("#console")).to_be_hidden()
    page.reload()
    expect(page.get_by_test_id("login")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()  # the token left with the session
