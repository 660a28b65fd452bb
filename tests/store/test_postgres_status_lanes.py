"""Group commit of the workers' statuses in the PostgreSQL store
(``orderflow.models.store.postgres_status``): the statuses queued together share one
``COMMIT``, each keeps its own outcome, and the lanes' lock order keeps two replicas'
groups from deadlocking; a deadlock forced from outside re-runs the group.

Calls started in one ``asyncio.gather`` are queued before the lane's runner first runs,
so they form one group. Counts only: the store's counters, ``pg_stat_database`` and
what is in the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orderflow.models.documents import MenuItem
from orderflow.models.store import OrderNotFound, StatusChange
from orderflow.models.store.postgres import PostgresStore
from tests.store.conftest import TEST_MENU
from tests.store.factories import delivery_events, line, order_events, order_status_events

pytestmark = pytest.mark.postgres

AT = "2026-11-26T12:00:00Z"
PLENTY = MenuItem(id="plenty", name="Plenty", category="pizza", price=900, stock=1000)


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(postgres_url, max_size=4)
    await store.seed_menu([*TEST_MENU, PLENTY])
    try:
        yield store
    finally:
        await store.close()


async def placed(store: PostgresStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        result = await store.place_order(
            [line("plenty", 1)], idempotency_key=None, request_hash=None, events=order_events
        )
        ids.append(result.order.id)
    return ids


async def confirm(store: PostgresStore, order_id: str, status: str = "confirmed") -> StatusChange:
    return await store.update_order_status(order_id, status, AT, order_status_events)


async def statuses(store: PostgresStore, order_ids: list[str]) -> list[str]:
    orders = [await store.get_order(order_id) for order_id in order_ids]
    return [order.status if order is not None else "missing" for order in orders]


async def test_statuses_queued_together_share_commits_and_each_is_applied(
    pg_store: PostgresStore,
) -> None:
    ids = await placed(pg_store, 40)
    before = pg_store.status_commits
    changes = await asyncio.gather(*(confirm(pg_store, order_id) for order_id in ids))
    assert all(change.changed and len(change.outbox) == 1 for change in changes)
    assert await statuses(pg_store, ids) == ["confirmed"] * 40
    assert pg_store.statuses_committed == 40
    assert pg_store.status_commits - before < 40  # shared: fewer commits than statuses
    pending = await pg_store.outbox_pending(limit=500)
    assert sum(1 for m in pending if m.envelope.event_type == "order.status_updated.v1") == 40


async def test_an_unknown_order_fails_alone_and_a_second_status_of_one_order_follows_the_first(
    pg_store: PostgresStore,
) -> None:
    first, second = await placed(pg_store, 2)
    outcomes = await asyncio.gather(
        confirm(pg_store, first),
        confirm(pg_store, "0" * 32),
        confirm(pg_store, first, "preparing"),
        confirm(pg_store, second),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], OrderNotFound)
    assert [o.changed for o in outcomes if isinstance(o, StatusChange)] == [True, True, True]
    assert await statuses(pg_store, [first, second]) == ["preparing", "confirmed"]
    order = await pg_store.get_order(first)
    assert order is not None
    assert [change.status for change in order.history] == ["created", "confirmed", "preparing"]


async def test_delivery_statuses_have_their_own_lane(pg_store: PostgresStore) -> None:
    ids = await placed(pg_store, 12)
    deliveries = [await pg_store.create_delivery(order_id, delivery_events) for order_id in ids]
    before = pg_store.status_commits
    changes = await asyncio.gather(
        *(pg_store.update_delivery_status(d.delivery.id, "on_the_way", AT) for d in deliveries)
    )
    assert all(change.changed for change in changes)
    assert pg_store.status_commits - before < 12
    conn = await asyncpg.connect(pg_store.dsn)
    try:
        rows = await conn.fetch(
            "SELECT status FROM deliveries WHERE id = ANY($1::text[])",
            [d.delivery.id for d in deliveries],
        )
    finally:
        await conn.close()
    assert [row["status"] for row in rows] == ["on_the_way"] * 12


async def test_two_replicas_groups_over_the_same_orders_in_opposite_order_never_deadlock(
    postgres_url: str, pg_store: PostgresStore
) -> None:
    """Both groups are made to start together behind a third session's lock on one of
    their rows; without the lanes' id-ordered prelude they could take the two rows in
    opposite orders and deadlock (whenever the second replica's group got the held row
    first). With it: no deadlock detected, no group run twice."""
    a, b = sorted(await placed(pg_store, 2))
    other = await PostgresStore.open(postgres_url, max_size=4)  # a second replica
    holder = await asyncpg.connect(pg_store.dsn)
    try:
        deadlocks_before = await deadlock_count(holder)
        blocker = holder.transaction()
        await blocker.start()
        await holder.execute("SELECT 1 FROM orders WHERE id = $1 FOR NO KEY UPDATE", a)
        one = asyncio.gather(confirm(pg_store, a), confirm(pg_store, b))
        two = asyncio.gather(confirm(other, b, "preparing"), confirm(other, a, "preparing"))
        await asyncio.sleep(0.5)  # both groups are waiting for the held row
        await blocker.rollback()
        await asyncio.gather(one, two)
        assert pg_store._statuses.orders.reruns == 0 and other._statuses.orders.reruns == 0
        assert await statuses(pg_store, [a, b]) == ["preparing", "preparing"]
        assert await deadlock_count(holder) == deadlocks_before
    finally:
        await holder.close()
        await other.close()


async def test_a_deadlock_forced_from_outside_runs_the_group_again(
    pg_store: PostgresStore,
) -> None:
    """An outside session holds ``b`` while the group (prelude: ``a`` then ``b``) holds
    ``a`` and waits for ``b``; the session then asks for ``a``. The group waited first,
    so its backend's deadlock check runs first (the session's is put off for 30 s): the
    group is rolled back, runs again once the session has committed, and both of its
    statuses are applied, once."""
    a, b = sorted(await placed(pg_store, 2))
    outside = await asyncpg.connect(pg_store.dsn)
    try:
        await outside.execute("SET deadlock_timeout = '30s'")
        transaction = outside.transaction()
        await transaction.start()
        await outside.execute("SELECT 1 FROM orders WHERE id = $1 FOR NO KEY UPDATE", b)
        group = asyncio.gather(confirm(pg_store, a), confirm(pg_store, b))
        await asyncio.sleep(0.3)  # the group holds a and waits for b
        await outside.execute("SELECT 1 FROM orders WHERE id = $1 FOR NO KEY UPDATE", a)
        await transaction.commit()  # reached once the group was rolled back
        changes = await group
        assert [change.changed for change in changes] == [True, True]
        assert pg_store._statuses.orders.reruns == 1
        order = await pg_store.get_order(a)
        assert order is not None
        assert [change.status for change in order.history] == ["created", "confirmed"]
    finally:
        await outside.close()


async def test_group_commit_off_gives_statuses_one_commit_each(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, max_size=4, group_commit=False)
    try:
        await store.seed_menu([*TEST_MENU, PLENTY])
        ids = await placed(store, 10)
        before = store.status_commits
        await asyncio.gather(*(confirm(store, order_id) for order_id in ids))
        assert store.status_commits - before == 10
        assert await statuses(store, ids) == ["confirmed"] * 10
    finally:
        await store.close()


async def deadlock_count(conn: asyncpg.Connection) -> int:
    """Deadlocks PostgreSQL detected in this database (its cumulative statistics,
    flushed by every backend within a second: read after a short wait)."""
    await asyncio.sleep(1.1)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    value = await conn.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(value or 0)
