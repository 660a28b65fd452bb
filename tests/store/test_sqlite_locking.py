"""A locked SQLite file makes the store wait and retry; callers never see "database is locked".

Another connection (standing in for another API worker process) holds the
write lock. The store is opened with a tiny busy_timeout so that SQLite hands
``SQLITE_BUSY`` back quickly and the store's own retry loop is exercised.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from orderflow.models.documents import MenuItem, OrderLineRequest
from orderflow.models.store import StoreUnavailable
from orderflow.models.store.sqlite import SqliteStore
from tests.store.factories import order_events

LINES = [OrderLineRequest(item_id="soup", quantity=1)]


async def until(condition: Callable[[], bool], attempts: int = 3000) -> None:
    """Poll a condition every 10 ms (synchronisation on state, not on elapsed time)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def seeded(path: Path, **options) -> SqliteStore:
    store = await SqliteStore.open(path, **options)
    await store.seed_menu([MenuItem(id="soup", name="Soup", category="soups", price=5, stock=3)])
    return store


def hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_locked_file_is_waited_for_then_the_order_goes_through(tmp_path: Path) -> None:
    store = await seeded(tmp_path / "db.sqlite", busy_timeout=0.01, deadline=60)
    other = hold_write_lock(tmp_path / "db.sqlite")
    try:
        order = asyncio.create_task(
            store.place_order(LINES, idempotency_key=None, request_hash=None, events=order_events)
        )
        await until(lambda: store.busy_retries >= 2)
        assert not order.done()
    finally:
        other.execute("COMMIT")
        other.close()
    result = await order
    assert result.order.lines[0].item_id == "soup"
    assert [item.stock for item in await store.list_menu()] == [2]
    await store.close()


async def test_lock_held_past_the_deadline_is_a_store_error(tmp_path: Path) -> None:
    store = await seeded(tmp_path / "db.sqlite", busy_timeout=0.01, deadline=0.3)
    other = hold_write_lock(tmp_path / "db.sqlite")
    try:
        with pytest.raises(StoreUnavailable, match="not done within the deadline"):
            await store.place_order(
                LINES, idempotency_key=None, request_hash=None, events=order_events
            )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [item.stock for item in await store.list_menu()] == [3]
    await store.close()
