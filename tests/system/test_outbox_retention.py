"""Outbox retention: the orders worker's relay deletes old published rows, never pending ones."""

from __future__ import annotations

import sqlite3
import time

import pytest
import redis.asyncio as aioredis

from orderflow.agents.orders import create_orders_app
from orderflow.agents.outbox_retention import OUTBOX_PRUNE_EVERY_SECONDS, OutboxPruner
from orderflow.agents.placement import place_order
from orderflow.agents.settings import Settings
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.models.store.sqlite import sqlite_path_from_url
from orderflow.runtime import App
from orderflow.runtime.testing import eventually, run_app


def outbox_ids(store_url: str) -> list[str]:
    """Every row of the SQLite outbox, published or not, read from the file itself."""
    raw = sqlite3.connect(sqlite_path_from_url(store_url), timeout=30)
    try:
        return [row[0] for row in raw.execute("SELECT id FROM outbox ORDER BY seq")]
    finally:
        raw.close()


async def place_unpublished_order(store: Store) -> list[str]:
    """An order whose publish failed (Redis unreachable): its outbox rows stay pending."""
    dead_publisher = App("dead-publisher", broker="redis://127.0.0.1:1/0")
    try:
        result = await place_order(
            store, dead_publisher, [OrderLineRequest(item_id="funghi", quantity=1)]
        )
    finally:
        await dead_publisher.stop()
    return [m.id for m in result.outbox]


async def clock_passes(moment: float) -> None:
    """Return once ``time.time()`` is past ``moment``: rows published then are "older than 0 s"."""
    await eventually(lambda: time.time() > moment, interval=0.001)


async def test_the_relay_prunes_published_rows_and_keeps_pending_ones(
    store: Store, store_url: str, redis_url: str, redis_client: aioredis.Redis, publisher: App
) -> None:
    published = await place_order(
        store, publisher, [OrderLineRequest(item_id="margherita", quantity=1)]
    )
    pending = await place_unpublished_order(store)
    assert outbox_ids(store_url) == [m.id for m in published.outbox] + pending

    # A tiny retention prunes everything published; a min age of an hour keeps
    # the relay from publishing (and so from making prunable) the pending rows.
    orders_app = create_orders_app(
        broker=redis_url,
        store=store,
        relay_interval=0.1,
        relay_min_age=3600,
        outbox_retention=0.0,
    )
    async with run_app(orders_app):
        await eventually(lambda: outbox_ids(store_url) == pending, timeout=30)
    assert [m.id for m in await store.outbox_pending()] == pending
    order = await store.get_order(published.order.id)
    assert order is not None  # only the outbox rows went, not the order


async def test_the_pruner_prunes_at_most_once_per_interval(
    store: Store, store_url: str, redis_client: aioredis.Redis, publisher: App
) -> None:
    now = [1000.0]
    pruner = OutboxPruner(0.0, clock=lambda: now[0])
    lines = [OrderLineRequest(item_id="caprese", quantity=1)]
    first = await place_order(store, publisher, lines)
    await clock_passes(time.time())
    assert await pruner.maybe_prune(store) == len(first.outbox)  # the first call prunes

    second = await place_order(store, publisher, lines)
    await clock_passes(time.time())
    now[0] += OUTBOX_PRUNE_EVERY_SECONDS - 1
    assert await pruner.maybe_prune(store) is None  # not due: nothing asked of the store
    assert outbox_ids(store_url) == [m.id for m in second.outbox]
    now[0] += 1
    assert await pruner.maybe_prune(store) == len(second.outbox)
    assert outbox_ids(store_url) == []


def test_retention_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_OUTBOX_RETENTION_SECONDS", raising=False)
    assert Settings().outbox_retention_seconds == 86_400
    monkeypatch.setenv("ORDERFLOW_OUTBOX_RETENTION_SECONDS", "90")
    assert Settings().outbox_retention_seconds == 90
    monkeypatch.setenv("ORDERFLOW_OUTBOX_RETENTION_SECONDS", "-1")
    with pytest.raises(ValueError):
        Settings()
    with pytest.raises(ValueError):
        OutboxPruner(-1)
