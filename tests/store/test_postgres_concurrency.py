"""Many concurrent buyers of the last items on PostgreSQL: exactly the stock sells.

The PostgreSQL half of the oversell proof at the store level. Unlike SQLite,
PostgreSQL really runs the buyers' transactions in parallel (a pool of
connections per process, several processes), so what keeps them from overselling
is the row lock each order takes on its items and the guarded decrement, not a
single writer. Exactly the stock is sold, both lines of an order or neither, no
error other than ``OutOfStock`` reaches a caller, and the stock -- watched from
another connection during the rush -- is never negative.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orderflow.models.documents import MenuItem
from orderflow.models.store import OutOfStock, PlaceOrderResult
from orderflow.models.store.postgres import PostgresStore
from tests.store.factories import line, order_events
from tests.store.hammer import hammer_processes

pytestmark = pytest.mark.postgres

PROCESSES = 3
BUYERS_PER_PROCESS = 100


@contextlib.asynccontextmanager
async def lowest_stock_seen(url: str) -> AsyncIterator[list[int]]:
    """Sample ``min(stock)`` from a connection of its own until the block ends."""
    seen: list[int] = []
    conn = await asyncpg.connect(url)
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            seen.append(await conn.fetchval("SELECT min(stock) FROM menu_items"))
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        stop.set()
        await sampler
        await conn.close()


async def test_processes_buying_the_last_items_never_oversell(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url)
    await store.seed_menu(
        [
            MenuItem(id="pizza", name="Pizza", category="pizza", price=1000, stock=40),
            MenuItem(id="cola", name="Cola", category="drinks", price=250, stock=25),
        ]
    )
    async with lowest_stock_seen(postgres_url) as seen:
        results = await hammer_processes(postgres_url, PROCESSES, BUYERS_PER_PROCESS)
    assert [r["errors"] for r in results] == [[]] * PROCESSES
    assert sum(r["succeeded"] for r in results) == 25  # cola is the limiting line
    assert sum(r["out_of_stock"] for r in results) == PROCESSES * BUYERS_PER_PROCESS - 25
    assert seen and min(seen) >= 0
    stock = {item.id: item.stock for item in await store.list_menu()}
    assert stock == {"pizza": 15, "cola": 0}  # no partial decrement of pizza
    assert await store.count_orders() == 25
    assert len(await store.outbox_pending(limit=1000)) == 25 * 2
    await store.close()


async def test_a_rush_on_one_pool_sells_exactly_the_stock(postgres_url: str) -> None:
    """300 buyers of the last 10 units through one process's pool of 20 connections."""
    store = await PostgresStore.open(postgres_url, max_size=20)
    await store.seed_menu(
        [MenuItem(id="last-slice", name="Last Slice", category="pizza", price=400, stock=10)]
    )
    async with lowest_stock_seen(postgres_url) as seen:
        outcomes = await asyncio.gather(
            *(
                store.place_order(
                    [line("last-slice", 1)],
                    idempotency_key=None,
                    request_hash=None,
                    events=order_events,
                )
                for _ in range(300)
            ),
            return_exceptions=True,
        )
    sold = [o for o in outcomes if isinstance(o, PlaceOrderResult)]
    rejected = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert [o for o in outcomes if not isinstance(o, PlaceOrderResult | OutOfStock)] == []
    assert (len(sold), len(rejected)) == (10, 290)
    assert all(r.available == 0 for r in rejected)
    assert seen and min(seen) >= 0
    assert [item.stock for item in await store.list_menu()] == [0]
    assert await store.count_orders("last-slice") == 10
    await store.close()
