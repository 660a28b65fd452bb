"""Live stock: the menu fan-out and ``GET /api/v1/menu/events`` against real servers.

What these tests prove:
* 250 subscriptions of one process's :class:`MenuHub` cost no menu read of their own
  (each starts from the cached levels), and one change costs one read however many
  subscribe, and all 250 receive it; a burst of changes is coalesced into few reads;
* over HTTP (a real ``orderflow api``): 200 open event streams each get the levels
  first, then the new level after another client places an order, with the process's
  menu reads (``orderflow_menu_fanout_reads_total``) counted; the ops console's
  set-stock reaches an open stream too (``stock.changed.v1``);
* ``orderflow refill`` announces its change on ``menu-stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from orderflow.agents.commands.refill import refill_store
from orderflow.agents.stock_events import announce_stock_change
from orderflow.agents.topics import MENU_STREAM
from orderflow.models.documents import MenuItem, OrderLineRequest
from orderflow.models.events import OrderCreated
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store
from orderflow.runtime import App
from orderflow.runtime.envelope import Envelope
from orderflow.web.menu_hub import MenuHub, StockLevels
from tests.web.api_process import ApiProcess, metric_value, sqlite_url
from tests.web.sse_client import RECEIVE_GUARD, EventReader, open_events
from tests.web.test_tracking import publish

ITEM = DEMO_MENU[0].id
OPERATOR_TOKEN = "menu-events-test-token-0123456789abcdef"
GATEWAY_ENV = {"ORDERFLOW_OPERATOR_TOKEN": OPERATOR_TOKEN}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_url(tmp_path_factory.mktemp("menu-events-store"))


class CountedReads:
    """The real store's ``list_menu``, counted (what the hub costs the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.count = 0

    async def __call__(self) -> list[MenuItem]:
        self.count += 1
        return await self.store.list_menu()


@contextlib.asynccontextmanager
async def running_hub(
    redis_url: str, reads: CountedReads, interval: float
) -> AsyncIterator[MenuHub]:
    app = App("test-menu-hub", broker=redis_url)
    hub = MenuHub(app, reads, min_interval=interval)
    hub.start()
    try:
        assert await hub.wait_ready(RECEIVE_GUARD)
        with hub.subscribe() as first:  # the first read follows the cursors
            await asyncio.wait_for(first.next(), RECEIVE_GUARD)
        yield hub
    finally:
        await hub.stop()
        await app.stop()


async def order_created(store: Store, redis: aioredis.Redis, quantity: int = 1) -> None:
    """Place an order in the store and publish its event, as the outbox relay does."""
    result = await store.place_order(
        [OrderLineRequest(item_id=ITEM, quantity=quantity)],
        idempotency_key=None,
        request_hash=None,
        events=lambda order: [],
    )
    order = result.order
    event = OrderCreated(
        order_id=order.id, lines=order.lines, total=order.total, created_at=order.created_at
    )
    await publish(redis, "orders-stream", event)


async def test_250_subscribers_cost_one_read_per_change_and_all_get_it(
    redis_url: str, redis_client: aioredis.Redis, store: Store
) -> None:
    reads = CountedReads(store)
    async with running_hub(redis_url, reads, interval=1.0) as hub:
        assert reads.count == 1
        with contextlib.ExitStack() as stack:
            subscriptions = [stack.enter_context(hub.subscribe()) for _ in range(250)]
            first = await asyncio.gather(*(s.next() for s in subscriptions))
            assert reads.count == 1  # 250 snapshots from the cached levels
            before = first[0][ITEM]
            assert all(levels == first[0] for levels in first)

            await order_created(store, redis_client, quantity=2)
            changed: list[StockLevels] = await asyncio.wait_for(
                asyncio.gather(*(s.next() for s in subscriptions)), RECEIVE_GUARD
            )
            assert [levels[ITEM] for levels in changed] == [before - 2] * 250
            assert reads.count == 2

            # A burst of 20 changes well within one interval: coalesced into at most two reads.
            for _ in range(20):
                await announce_stock_change(hub.app, [ITEM], source="test")
            await store.set_stock(ITEM, 7)
            await announce_stock_change(hub.app, [ITEM], source="test")
            while hub.levels is None or hub.levels[ITEM] != 7:
                await asyncio.wait_for(subscriptions[0].next(), RECEIVE_GUARD)
            assert 3 <= reads.count <= 4
            latest = [await asyncio.wait_for(s.next(), RECEIVE_GUARD) for s in subscriptions[1:]]
            assert all(levels[ITEM] == 7 for levels in latest)


async def menu_reads(client: httpx.AsyncClient) -> float:
    return await metric_value(client, "orderflow_menu_fanout_reads_total")


async def next_stock(reader: EventReader) -> dict[str, int]:
    event = await reader.next()
    assert event.event == "stock" and event.id is None
    body: dict[str, Any] = event.json()
    return {item["id"]: item["stock"] for item in body["items"]}


async def test_200_open_pages_see_an_order_with_a_bounded_number_of_reads(
    events_gateway: ApiProcess, store: Store
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=events_gateway.url, timeout=RECEIVE_GUARD)
        )
        readers = [
            await stack.enter_async_context(open_events(f"{events_gateway.url}/api/v1/menu/events"))
            for _ in range(200)
        ]
        first = await asyncio.gather(*(next_stock(r) for r in readers))
        before = first[0][ITEM]
        assert all(levels == first[0] for levels in first)
        reads_before = await menu_reads(client)

        response = await client.post(
            "/api/v1/orders",
            json={"lines": [{"item_id": ITEM, "quantity": 1}]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        changed = await asyncio.gather(*(next_stock(r) for r in readers))
        assert [levels[ITEM] for levels in changed] == [before - 1] * 200
        reads_after = await menu_reads(client)
    # 200 pages opened: no read of their own; the order: one read for all of them.
    assert reads_after - reads_before == 1


async def test_ops_set_stock_reaches_an_open_page(events_gateway: ApiProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=events_gateway.url, timeout=RECEIVE_GUARD) as client,
        open_events(f"{events_gateway.url}/api/v1/menu/events") as reader,
    ):
        await next_stock(reader)
        response = await client.put(
            f"/api/v1/ops/menu/{ITEM}/stock",
            json={"stock": 33},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        assert (await next_stock(reader))[ITEM] == 33


async def test_refill_command_announces_the_change(
    redis_url: str, redis_client: aioredis.Redis, store_url: str, store: Store
) -> None:
    await store.set_stock(ITEM, 0)
    last: Any = await redis_client.xrevrange(MENU_STREAM, count=1)
    start = last[0][0].decode() if last else "0-0"
    touched = await refill_store(store_url, 5, redis_url)
    entries: Any = await redis_client.xrange(MENU_STREAM, min=f"({start}")
    assert touched == len(DEMO_MENU)
    envelopes = [Envelope.from_fields(fields) for _, fields in entries]
    assert [e.event_type for e in envelopes] == ["stock.changed.v1"]
    assert envelopes[0].payload["item_ids"] == []  # every item
    assert {item.stock for item in await store.list_menu()} == {5}
