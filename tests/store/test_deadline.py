"""The deadline part of the store contract, run against every adapter.

Every operation ends by its deadline; a write that raised ``DeadlineExceeded`` was
abandoned -- nothing of it is committed, neither then nor after the lock it waited
for is released. Reads are not held up by a write waiting for a lock, and end at
their deadline too when the store cannot be read.
"""

from __future__ import annotations

import asyncio

import pytest

from orderflow.models.store import DeadlineExceeded, Store, StoreUnavailable
from orderflow.models.store.deadline import within
from orderflow.runtime.testing import eventually
from tests.store.conftest import read_locked, write_locked
from tests.store.factories import line, order_events

SHORT = 0.5


async def stock_of(store: Store) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


async def place(store: Store, item_id: str, quantity: int, key: str | None = None):
    return await store.place_order(
        [line(item_id, quantity)], idempotency_key=key, request_hash="h", events=order_events
    )


async def test_a_write_past_its_deadline_is_abandoned_and_never_commits(
    menu_store: Store,
) -> None:
    store = menu_store
    before = await stock_of(store)
    async with write_locked(store, "pizza"):
        with pytest.raises(DeadlineExceeded) as exceeded, within(SHORT):
            await place(store, "pizza", 2, key="late")
        assert isinstance(exceeded.value, StoreUnavailable)  # what callers already handle
        assert await stock_of(store) == before  # read while the lock is still held
    # Released: a transaction still waiting for the lock would commit now. The next
    # write is answered only after everything the store was asked before it (SQLite:
    # one writer thread, in order; PostgreSQL rolled back before raising).
    other = await place(store, "cola", 1)
    assert await store.count_orders() == 1
    assert (await stock_of(store))["pizza"] == before["pizza"]
    pending = await store.outbox_pending(limit=100)
    assert {message.envelope.key for message in pending} == {other.order.id}
    # Nothing was kept under the abandoned call's key: the retry places the order.
    retried = await place(store, "pizza", 2, key="late")
    assert not retried.replayed
    assert (await stock_of(store))["pizza"] == before["pizza"] - 2


async def test_reads_go_on_while_a_write_waits_for_a_lock(menu_store: Store) -> None:
    store = menu_store
    placed = await place(store, "cola", 1)
    async with write_locked(store, "pizza") as holder:
        waiting = asyncio.create_task(place(store, "pizza", 1))
        await eventually(holder.write_waiting, timeout=30)
        for _ in range(3):
            assert (await stock_of(store))["cola"] == 4
            fetched = await store.get_order(placed.order.id)
            assert fetched is not None and fetched.id == placed.order.id
        assert not waiting.done()  # every read above was answered while it waited
    result = await waiting  # the lock is gone within the write's deadline: it goes through
    assert (await stock_of(store))["pizza"] == 9
    assert result.order.lines[0].item_id == "pizza"


async def test_a_read_of_a_store_that_cannot_be_read_ends_at_its_deadline(
    menu_store: Store,
) -> None:
    store = menu_store
    async with read_locked(store):
        for read in (store.list_menu, store.count_orders):
            with pytest.raises(DeadlineExceeded), within(SHORT):
                await read()

    async def readable() -> bool:
        try:
            return len(await store.list_menu()) == 3
        except StoreUnavailable:
            return False

    await eventually(readable, timeout=60)
