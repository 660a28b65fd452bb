"""Group commit in the SQLite store: writes already queued share one ``COMMIT``, and each
keeps its own all-or-nothing, its deadline and its error.

To make the groups certain rather than likely, the writer thread is first held busy
by a write whose event factory waits on a gate (a place_order of ``cola``: it is
part of every count below); the writes under test queue up behind it and become
one group when the gate opens. Counts only: the store's counters and what is in
the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from orderflow.models.documents import Order
from orderflow.models.store import (
    DeadlineExceeded,
    OutboxMessage,
    OutOfStock,
    PlaceOrderResult,
    open_store,
)
from orderflow.models.store.deadline import current_deadline, seconds_left, within
from orderflow.models.store.sqlite import SqliteStore
from orderflow.models.store.sqlite_threads import Job, StoreThreads
from tests.store.conftest import TEST_MENU
from tests.store.factories import line, order_events, order_status_events
from tests.store.test_sqlite_locking import hold_write_lock, until


@pytest.fixture(params=[True, False], ids=["group_commit", "one_commit_each"])
async def sqlite_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "store.db", group_commit=request.param)
    await store.seed_menu(TEST_MENU)
    try:
        yield store
    finally:
        await store.close()


async def place(store: SqliteStore, item_id: str, quantity: int, events: Any = order_events):
    return await store.place_order(
        [line(item_id, quantity)], idempotency_key=None, request_hash=None, events=events
    )


@asynccontextmanager
async def writer_held(store: SqliteStore, queued: int) -> AsyncIterator[asyncio.Task[Any]]:
    """Hold the writer thread inside a write until ``queued`` more writes wait behind it."""
    entered, gate = threading.Event(), threading.Event()

    def wait_at_gate(order: Order) -> list[OutboxMessage]:
        entered.set()
        gate.wait(60)
        return order_events(order)

    holder = asyncio.create_task(place(store, "cola", 1, events=wait_at_gate))
    await until(entered.is_set)
    try:
        yield holder
        await until(lambda: store.writes_in_flight == queued + 1)
    finally:
        gate.set()
    await holder


async def stock(store: SqliteStore) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


def rows(store: SqliteStore, sql: str) -> list[tuple[Any, ...]]:
    """Read the file with a connection of our own: what is committed, nothing else."""
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_queued_writes_share_commits_and_all_their_effects_are_there(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    placed = [await place(store, "pizza", 1) for _ in range(4)]
    commits, jobs = store.commits, store.jobs_committed
    async with writer_held(store, queued=14):
        writes = asyncio.gather(
            *(place(store, "last-slice", 1) for _ in range(6)),
            *(
                store.update_order_status(
                    result.order.id, status, "2026-01-01T00:00:00Z", order_status_events
                )
                for result in placed
                for status in ("confirmed", "preparing")
            ),
            return_exceptions=True,
        )
    results = await writes
    assert not [result for result in results if isinstance(result, BaseException)]
    assert store.jobs_committed - jobs == 1 + 6 + 8  # the holder, the orders, the updates
    if store.group_commit:
        assert store.commits - commits == 2  # the holder alone, then one group of 14
        assert store.largest_group == 14
    else:
        assert store.commits - commits == 15
        assert store.largest_group == 1
    assert (await stock(store))["last-slice"] == 7 - 6
    assert await store.count_orders() == 4 + 1 + 6
    statuses = {
        order_id: status for order_id, status in rows(store, "SELECT id, status FROM orders")
    }
    assert all(statuses[result.order.id] == "preparing" for result in placed)
    # Every order has its two events, every status change its one (none lost or doubled).
    assert rows(store, "SELECT count(*) FROM outbox") == [((4 + 1 + 6) * 2 + 8,)]


async def test_a_failing_job_leaves_nothing_and_its_group_commits(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    before = await stock(store)
    commits = store.commits
    async with writer_held(store, queued=3):
        first = asyncio.create_task(place(store, "pizza", 2))
        refused = asyncio.create_task(place(store, "last-slice", 8))  # 7 in stock
        last = asyncio.create_task(place(store, "pizza", 3))
    with pytest.raises(OutOfStock):
        await refused
    placed: list[PlaceOrderResult] = [await first, await last]
    assert store.commits - commits == (2 if store.group_commit else 3)
    after = await stock(store)
    assert after == {**before, "cola": before["cola"] - 1, "pizza": before["pizza"] - 5}
    assert await store.count_orders() == 3  # the holder's, first and last
    assert rows(store, "SELECT count(*) FROM order_lines WHERE item_id = 'last-slice'") == [(0,)]
    keys = {message.envelope.key for message in await store.outbox_pending(limit=100)}
    assert {result.order.id for result in placed} <= keys and len(keys) == 3


def sleep_past_the_deadline(order: Order) -> list[OutboxMessage]:
    """An event factory that outlives its caller's deadline (it runs in the caller's
    context, so it knows it): the job's body returns after the caller gave up."""
    deadline = current_deadline()
    assert deadline is not None
    time.sleep(seconds_left(deadline) + 0.2)
    return order_events(order)


async def test_a_job_past_its_deadline_inside_a_group_leaves_nothing_and_the_others_commit(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    before = await stock(store)
    jobs = store.jobs_committed

    async def too_slow() -> PlaceOrderResult:
        with within(1.0):
            return await place(store, "last-slice", 2, events=sleep_past_the_deadline)

    async with writer_held(store, queued=3):
        first = asyncio.create_task(place(store, "pizza", 1))
        late = asyncio.create_task(too_slow())
        last = asyncio.create_task(place(store, "cola", 1))
    with pytest.raises(DeadlineExceeded):
        await late
    await first
    await last
    assert store.jobs_committed - jobs == 3  # the holder, first and last
    after = await stock(store)
    assert after["last-slice"] == before["last-slice"]
    assert after["pizza"] == before["pizza"] - 1 and after["cola"] == before["cola"] - 2
    assert await store.count_orders() == 3
    assert rows(store, "SELECT count(*) FROM outbox") == [(3 * 2,)]


async def test_a_cancelled_caller_inside_a_group_leaves_nothing(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "store.db")
    try:
        await store.seed_menu(TEST_MENU)
        async with writer_held(store, queued=2):
            cancelled = asyncio.create_task(place(store, "last-slice", 1))
            kept = asyncio.create_task(place(store, "pizza", 1))
            await until(lambda: store.writes_in_flight == 3)
            cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await kept
        await until(lambda: store.writes_in_flight == 0)
        assert (await stock(store))["last-slice"] == 7
        assert await store.count_orders() == 2  # the holder's and kept
    finally:
        await store.close()


async def test_a_locked_file_retries_the_whole_group(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "store.db", busy_timeout=0.01, deadline=60)
    try:
        await store.seed_menu(TEST_MENU)
        commits, jobs = store.commits, store.jobs_committed
        other = hold_write_lock(tmp_path / "store.db")
        try:
            orders = [asyncio.create_task(place(store, "pizza", 1)) for _ in range(5)]
            await until(lambda: store.busy_retries >= 2 and store.writes_in_flight == 5)
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.gather(*orders)
        assert (await stock(store))["pizza"] == 10 - 5
        assert store.busy_retries >= 2
        assert store.jobs_committed - jobs == 5
        assert store.commits - commits < 5  # the first waited alone at most; the others grouped
    finally:
        await store.close()


def threads_with_table(tmp_path: Path) -> StoreThreads:
    path = str(tmp_path / "db.sqlite")

    def connect(job: Job) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY,"
            " parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        return conn

    return StoreThreads(path, connect_writer=connect, connect_reader=connect, readers=1)


async def test_a_failed_group_commit_fails_every_claimed_job_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    """A deferred foreign key is checked at ``COMMIT``: one job's orphan row fails the
    group's commit, so every claimed job of the group is told, and none is kept."""
    threads = threads_with_table(tmp_path)
    entered, gate = threading.Event(), threading.Event()

    def insert(sql: str) -> Callable[[sqlite3.Connection], str]:
        def body(conn: sqlite3.Connection) -> str:
            conn.execute(sql)
            return sql

        return body

    def held(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(60)

    deadline = time.monotonic() + 60
    holder = asyncio.create_task(threads.write(held, deadline=deadline))
    await until(entered.is_set)
    group = asyncio.gather(
        threads.write(insert("INSERT INTO parent VALUES (1)"), deadline=deadline),
        threads.write(insert("INSERT INTO child VALUES (1, 99)"), deadline=deadline),
        threads.write(insert("INSERT INTO parent VALUES (2)"), deadline=deadline),
        return_exceptions=True,
    )
    await until(lambda: threads.in_flight["write"] == 4)
    gate.set()
    await holder
    results = await group
    assert [type(result) for result in results] == [sqlite3.IntegrityError] * 3
    assert threads.writer.commits == 1 and threads.writer.jobs_committed == 1  # the holder
    await threads.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        assert conn.execute("SELECT count(*) FROM parent").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM child").fetchone() == (0,)
    finally:
        conn.close()


async def test_the_store_url_turns_group_commit_off(tmp_path: Path) -> None:
    for query, expected in (("", True), ("?group_commit=off", False), ("?group_commit=on", True)):
        store = await open_store(f"sqlite:///{tmp_path}/db{query and '-x'}.sqlite{query}")
        try:
            assert isinstance(store, SqliteStore) and store.group_commit is expected
        finally:
            await store.close()
    with pytest.raises(ValueError, match="group_commit"):
        await open_store(f"sqlite:///{tmp_path}/db.sqlite?group_commit=maybe")


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"store": "sqlite"}) or 0.0


async def test_every_commit_is_observed_with_its_group_size(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    commits, jobs = store.commits, store.jobs_committed
    sizes = metric("orderflow_store_group_size_count")
    grouped = metric("orderflow_store_group_size_sum")
    timed = metric("orderflow_store_commit_seconds_count")
    async with writer_held(store, queued=5):
        orders = asyncio.gather(*(place(store, "pizza", 1) for _ in range(5)))
    await orders
    assert metric("orderflow_store_group_size_count") - sizes == store.commits - commits
    assert metric("orderflow_store_commit_seconds_count") - timed == store.commits - commits
    assert metric("orderflow_store_group_size_sum") - grouped == store.jobs_committed - jobs == 6
