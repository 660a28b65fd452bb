"""``load_view``: a socket's first message, read from the store and the status cache at
the same time. Real Valkey for the cache and a real SQLite store: the later status of
the two wins (with the store's history), a failing store leaves the snapshot to the
cache, and with neither the error reaches the socket (which closes asking to retry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from sanic import Sanic

from orderflow.agents.status_cache import merge_order_status
from orderflow.models.documents import MenuItem, OrderLineRequest
from orderflow.models.store import StoreUnavailable
from orderflow.models.store.sqlite import SqliteStore
from orderflow.web.order_view import load_view

ITEM = MenuItem(id="pie", name="Pie", category="pizza", price=800, stock=5)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "store.db")
    await opened.seed_menu([ITEM])
    try:
        yield opened
    finally:
        await opened.close()


def app_with(**ctx: Any) -> Sanic:
    return cast(Sanic, SimpleNamespace(ctx=SimpleNamespace(**ctx)))


async def placed(store: SqliteStore) -> str:
    lines = [OrderLineRequest(item_id="pie", quantity=1)]
    result = await store.place_order(
        lines, idempotency_key=None, request_hash=None, events=lambda order: []
    )
    return result.order.id


async def cache(redis: aioredis.Redis, order_id: str, status: str) -> None:
    pipe = redis.pipeline(transaction=False)
    merge_order_status(pipe, order_id=order_id, status=status, at="t9", ttl_seconds=600)
    await pipe.execute()


async def test_the_later_status_of_store_and_cache_wins_with_the_stores_history(
    store: SqliteStore, redis_client: aioredis.Redis
) -> None:
    order_id = await placed(store)
    await cache(redis_client, order_id, "preparing")
    view = await load_view(app_with(redis=redis_client, store=store), order_id)
    assert view is not None and view.status == "preparing"
    assert view.history[0]["status"] == "created"
    no_cache = await load_view(app_with(redis=None, store=store), order_id)
    assert no_cache is not None and no_cache.status == "created"


async def test_a_failing_store_leaves_the_snapshot_to_the_cache_and_neither_is_an_error(
    store: SqliteStore, redis_client: aioredis.Redis
) -> None:
    order_id = await placed(store)
    await cache(redis_client, order_id, "confirmed")
    await store.close()  # every read now fails
    view = await load_view(app_with(redis=redis_client, store=store), order_id)
    assert view is not None and view.status == "confirmed"
    unknown_to_the_cache = "f" * 32
    with pytest.raises(StoreUnavailable):
        await load_view(app_with(redis=redis_client, store=store), unknown_to_the_cache)
