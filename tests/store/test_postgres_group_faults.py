"""The PostgreSQL group commit's answers when a group is cut off at its worst moments,
made to happen on purpose with triggers in the test's private database:

* a ``COMMIT`` cut off by a lost connection (a deferred constraint trigger makes the
  ``COMMIT`` sleep; the test terminates its backend meanwhile): every claimed call gets
  ``OutcomeUnknown``, never a success or a plain failure, and the store goes on;
* a caller cancelled while its body runs (a trigger makes one order's statement sleep;
  the test cancels that caller): only that order is rolled back, to its savepoint, and
  the others of its group commit.

Counts only: what the callers were told and what is in the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orderflow.models.store import OutcomeUnknown, PlaceOrderResult
from orderflow.models.store.postgres import PostgresStore
from orderflow.runtime.testing import eventually
from tests.store.conftest import TEST_MENU
from tests.store.factories import line, order_events

pytestmark = pytest.mark.postgres

SLEEPY = """
CREATE FUNCTION sleep_for_cola() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.item_id = 'cola' THEN PERFORM pg_sleep(5); END IF;
    RETURN NULL;
END $$;
"""
SLOW_COMMIT = """
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON order_lines
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sleep_for_cola()
"""
SLOW_BODY = """
CREATE TRIGGER slow_body AFTER INSERT ON order_lines
FOR EACH ROW EXECUTE FUNCTION sleep_for_cola()
"""
SLEEPING = """
SELECT pid, query FROM pg_stat_activity
WHERE datname = current_database() AND wait_event = 'PgSleep'
"""


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(postgres_url, max_size=4)
    await store.seed_menu(TEST_MENU)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def admin(pg_store: PostgresStore) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_store.dsn)
    try:
        await conn.execute(SLEEPY)
        yield conn
    finally:
        await conn.close()


async def place(store: PostgresStore, item_id: str) -> PlaceOrderResult:
    return await store.place_order(
        [line(item_id, 1)], idempotency_key=None, request_hash=None, events=order_events
    )


async def sleeping_backend(conn: asyncpg.Connection) -> asyncpg.Record:
    """The backend in ``pg_sleep`` (the trigger), once it is there."""
    rows: list[asyncpg.Record] = []

    async def asleep() -> bool:
        rows[:] = await conn.fetch(SLEEPING)
        return bool(rows)

    await eventually(asleep, timeout=10, message="a backend sleeping in the trigger")
    return rows[0]


async def stock(store: PostgresStore) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


async def test_a_commit_cut_off_tells_every_claimed_call_its_outcome_is_unknown(
    pg_store: PostgresStore, admin: asyncpg.Connection
) -> None:
    await admin.execute(SLOW_COMMIT)
    group = asyncio.gather(
        place(pg_store, "pizza"), place(pg_store, "cola"), return_exceptions=True
    )
    sleeper = await sleeping_backend(admin)
    assert sleeper["query"].strip().upper() == "COMMIT"  # the group's, in its trigger
    await admin.execute("SELECT pg_terminate_backend($1)", sleeper["pid"])
    outcomes = await group
    assert all(isinstance(outcome, OutcomeUnknown) for outcome in outcomes), outcomes
    assert pg_store.commits == 0
    # This time the COMMIT did not happen: nothing of the group is there.
    assert await admin.fetchval("SELECT count(*) FROM orders") == 0
    assert await stock(pg_store) == {"pizza": 10, "cola": 5, "last-slice": 7}
    await admin.execute("DROP TRIGGER slow_commit ON order_lines")
    assert not (await place(pg_store, "pizza")).replayed  # the lane goes on
    assert await pg_store.count_orders() == 1


async def test_a_caller_cancelled_during_its_body_is_rolled_back_alone(
    pg_store: PostgresStore, admin: asyncpg.Connection
) -> None:
    await admin.execute(SLOW_BODY)
    first = asyncio.create_task(place(pg_store, "pizza"))
    slow = asyncio.create_task(place(pg_store, "cola"))
    last = asyncio.create_task(place(pg_store, "last-slice"))
    sleeper = await sleeping_backend(admin)
    assert "INSERT" in sleeper["query"].upper() or "WITH" in sleeper["query"].upper()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    kept = await asyncio.gather(first, last)
    assert sorted(result.order.lines[0].item_id for result in kept) == ["last-slice", "pizza"]
    # The three were one group: one COMMIT, which kept the two others.
    assert (pg_store.commits, pg_store.largest_group) == (1, 2)
    assert await pg_store.count_orders() == 2
    assert await stock(pg_store) == {"pizza": 9, "cola": 5, "last-slice": 6}
    assert await admin.fetchval("SELECT count(*) FROM order_lines WHERE item_id = 'cola'") == 0
