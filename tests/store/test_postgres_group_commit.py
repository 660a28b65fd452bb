"""Group commit of ``place_order`` in the PostgreSQL store: the orders queued together
share one ``COMMIT``, and each keeps its all-or-nothing, its deadline and its error.

Calls started in one ``asyncio.gather`` are queued before the lane's runner first
runs, so they form one group; to keep a group waiting (for the deadline and
cancellation cases) another session holds the item's row lock, which the
group's prelude waits for. Counts only: the store's counters and what is in the
database.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from orderflow.models.documents import MenuItem, Order
from orderflow.models.store import (
    DeadlineExceeded,
    OutboxMessage,
    OutcomeUnknown,
    OutOfStock,
    PlaceOrderResult,
    StoreUnavailable,
    UnknownItem,
    open_store,
)
from orderflow.models.store.deadline import within
from orderflow.models.store.localpostgres import LocalPostgres
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.postgres_pool import group_commit_from_url, split_postgres_url
from orderflow.runtime.testing import eventually
from tests.store.conftest import TEST_MENU, write_locked
from tests.store.factories import line, order_events

pytestmark = pytest.mark.postgres

MARGHERITA = MenuItem(id="margherita", name="Margherita", category="pizza", price=900, stock=30)


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(postgres_url, max_size=4)
    await store.seed_menu([*TEST_MENU, MARGHERITA])
    try:
        yield store
    finally:
        await store.close()


async def place(
    store: PostgresStore,
    item_id: str,
    quantity: int = 1,
    key: str | None = None,
    events: Any = None,
) -> PlaceOrderResult:
    return await store.place_order(
        [line(item_id, quantity)],
        idempotency_key=key,
        request_hash="h" if key else None,
        events=events or order_events,
    )


async def stock(store: PostgresStore) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


def test_the_url_option_is_read_and_removed() -> None:
    url = "postgresql://u@db/x?group_commit=off&pool_max_size=3&application_name=api"
    assert split_postgres_url(url) == (
        "postgresql://u@db/x?application_name=api",
        {"pool_max_size": 3},
    )
    assert not group_commit_from_url(url)
    assert group_commit_from_url("postgresql://u@db/x")
    assert group_commit_from_url("postgresql://u@db/x?group_commit=on")
    with pytest.raises(ValueError, match="group_commit"):
        group_commit_from_url("postgresql://u@db/x?group_commit=maybe")


async def test_a_rush_on_one_item_sells_exactly_the_stock_in_fewer_commits(
    pg_store: PostgresStore,
) -> None:
    store = pg_store
    before = REGISTRY.get_sample_value("orderflow_store_group_size_count", {"store": "postgresql"})
    outcomes = await asyncio.gather(
        *(place(store, "margherita") for _ in range(50)), return_exceptions=True
    )
    sold = [o for o in outcomes if isinstance(o, PlaceOrderResult)]
    rejected = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert (len(sold), len(rejected)) == (30, 20)
    assert (await stock(store))["margherita"] == 0
    assert await store.count_orders("margherita") == 30
    assert len(await store.outbox_pending(limit=1000)) == 30 * 2
    assert store.jobs_committed == 30
    assert store.commits < 30  # groups formed
    assert 1 < store.largest_group <= 64
    after = REGISTRY.get_sample_value("orderflow_store_group_size_count", {"store": "postgresql"})
    assert (after or 0) - (before or 0) == store.commits


async def test_a_failing_call_leaves_the_others_of_its_group_committed(
    pg_store: PostgresStore,
) -> None:
    store = pg_store
    outcomes = await asyncio.gather(
        place(store, "pizza", 2),
        place(store, "nope"),
        place(store, "cola", 6),  # 5 left
        place(store, "cola", 1),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], PlaceOrderResult)
    assert isinstance(outcomes[1], UnknownItem)
    assert isinstance(outcomes[2], OutOfStock) and outcomes[2].available == 5
    assert isinstance(outcomes[3], PlaceOrderResult)
    assert (store.commits, store.jobs_committed) == (1, 2)  # one group, two kept
    assert await stock(store) == {"pizza": 8, "cola": 4, "last-slice": 7, "margherita": 30}
    assert await store.count_orders() == 2
    assert len(await store.outbox_pending(limit=100)) == 2 * 2


@pytest.mark.parametrize("group_commit", ["on", "off"])
async def test_one_key_twice_at_once_is_one_order_for_both(
    postgres_url: str, group_commit: str
) -> None:
    store = await open_store(f"{postgres_url}?group_commit={group_commit}")
    assert isinstance(store, PostgresStore) and store.group_commit == (group_commit == "on")
    try:
        await store.seed_menu(TEST_MENU)
        first, second = await asyncio.gather(
            place(store, "pizza", key="k1"), place(store, "pizza", key="k1")
        )
        assert first.order.id == second.order.id
        assert sorted([first.replayed, second.replayed]) == [False, True]
        assert await store.count_orders() == 1
        assert (await stock(store))["pizza"] == 9
    finally:
        await store.close()


async def test_a_call_past_its_deadline_in_a_waiting_group_commits_nothing(
    pg_store: PostgresStore,
) -> None:
    store = pg_store
    async with write_locked(store, "pizza") as holder:
        patient = asyncio.create_task(place(store, "pizza", 1))
        with within(0.3):
            hurried = asyncio.create_task(place(store, "pizza", 2, key="late"))
        await eventually(holder.write_waiting, timeout=30)
        with pytest.raises(DeadlineExceeded):
            await hurried
        assert not patient.done()
    await patient
    assert await store.count_orders() == 1
    assert (await stock(store))["pizza"] == 9
    retried = await place(store, "pizza", 2, key="late")  # nothing was kept under the key
    assert not retried.replayed


async def test_a_caller_cancelled_while_queued_commits_nothing(pg_store: PostgresStore) -> None:
    store = pg_store
    async with write_locked(store, "pizza") as holder:
        kept = asyncio.create_task(place(store, "pizza", 1))
        dropped = asyncio.create_task(place(store, "pizza", 3))
        await eventually(holder.write_waiting, timeout=30)
        dropped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dropped
    await kept
    assert await store.count_orders() == 1
    assert (await stock(store))["pizza"] == 9
    assert store.jobs_committed == 1


async def test_each_body_runs_in_its_callers_context(pg_store: PostgresStore) -> None:
    store = pg_store
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
    seen: dict[str, str] = {}

    def events(order: Order) -> list[OutboxMessage]:
        seen[order.id] = who.get()
        return order_events(order)

    async def as_buyer(name: str) -> tuple[str, PlaceOrderResult]:
        who.set(name)
        return name, await place(store, "margherita", events=events)

    results = await asyncio.gather(*(as_buyer(f"buyer-{n}") for n in range(5)))
    assert store.largest_group > 1
    assert all(seen[result.order.id] == name for name, result in results)


async def test_a_group_whose_connection_is_lost_commits_nothing(
    pg_store: PostgresStore, postgres_url: str, postgres_server: LocalPostgres
) -> None:
    store = pg_store
    database = postgres_url.rsplit("/", 1)[1]

    def kill_the_connection(order: Order) -> list[OutboxMessage]:
        # The group's connection sits idle in its transaction while this runs.
        postgres_server.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND state = 'idle in transaction'"
        )
        return order_events(order)

    outcomes = await asyncio.gather(
        place(store, "pizza"),
        place(store, "cola", events=kill_the_connection),
        place(store, "last-slice"),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert not any(isinstance(o, OutcomeUnknown) for o in outcomes)  # COMMIT never sent
    assert store.commits == 0
    for _ in range(3):  # the pool replaces the dead connection
        try:
            assert await store.count_orders() == 0
            break
        except StoreUnavailable:
            continue
    assert await stock(store) == {"pizza": 10, "cola": 5, "last-slice": 7, "margherita": 30}
    await place(store, "pizza")  # and the lane goes on
    assert await store.count_orders() == 1


async def test_group_commit_off_gives_one_commit_per_order(postgres_url: str) -> None:
    store = await open_store(f"{postgres_url}?group_commit=off")
    assert isinstance(store, PostgresStore) and not store.group_commit
    try:
        await store.seed_menu([MARGHERITA])
        outcomes = await asyncio.gather(*(place(store, "margherita") for _ in range(12)))
        assert len(outcomes) == 12
        assert (store.commits, store.jobs_committed, store.largest_group) == (12, 12, 1)
        assert await store.count_orders() == 12
    finally:
        await store.close()
