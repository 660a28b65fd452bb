"""The cross-process writer lock (``flock`` on ``<db>-writer.lock``), with real processes.

Several processes write one file at once: every write commits exactly once, and
SQLite's own lock is never found held (``busy_retries`` stays 0 even with a
busy timeout of a few milliseconds), because the processes take turns on the
flock before ``BEGIN IMMEDIATE``. A process that holds the flock and nothing
else holds every write up: a write past its deadline fails and leaves nothing,
reads go on, and once the lock is released the next write goes through.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orderflow.models.documents import MenuItem, OrderLineRequest
from orderflow.models.store import DeadlineExceeded, open_store
from orderflow.models.store.sqlite import SqliteStore
from orderflow.models.store.sqlite_writer_lock import LOCK_SUFFIX
from tests.store.conftest import held_by_another_process
from tests.store.factories import order_events
from tests.store.hammer import hammer_processes

PROCESSES = 3
BUYERS_PER_PROCESS = 40
LINES = [OrderLineRequest(item_id="soup", quantity=1)]

_HOLD_WRITER_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def writer_lock_held(db: Path) -> Iterator[None]:
    """Another process takes the writer flock of ``db`` (and nothing else) until exit."""
    with held_by_another_process(_HOLD_WRITER_LOCK, str(db) + LOCK_SUFFIX):
        yield


def lock_file_exists(db: Path) -> bool:
    return Path(str(db) + LOCK_SUFFIX).exists()


async def seeded(path: Path, stock: int, **options: object) -> SqliteStore:
    store = await SqliteStore.open(path, **options)  # type: ignore[arg-type]
    await store.seed_menu(
        [
            MenuItem(id="pizza", name="Pizza", category="pizza", price=1000, stock=stock),
            MenuItem(id="cola", name="Cola", category="drinks", price=250, stock=stock),
            MenuItem(id="soup", name="Soup", category="soups", price=5, stock=stock),
        ]
    )
    return store


async def test_processes_writing_one_file_commit_every_write_once_with_no_busy_retry(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shared.db"
    store = await seeded(db, stock=1000)
    total = PROCESSES * BUYERS_PER_PROCESS
    # A 5 ms busy timeout: a BEGIN IMMEDIATE that found SQLite's lock held would show.
    results = await hammer_processes(str(db), PROCESSES, BUYERS_PER_PROCESS, busy_timeout=0.005)
    assert [r["errors"] for r in results] == [[]] * PROCESSES
    assert sum(r["succeeded"] for r in results) == total
    assert [r["busy_retries"] for r in results] == [0] * PROCESSES
    assert await store.count_orders() == total  # each write committed once, none twice
    stock = {item.id: item.stock for item in await store.list_menu()}
    assert stock == {"pizza": 1000 - total, "cola": 1000 - total, "soup": 1000}
    assert len(await store.outbox_pending(limit=10 * total)) == 2 * total
    await store.close()


async def test_a_held_writer_lock_makes_a_write_miss_its_deadline_and_leave_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db.sqlite"
    store = await seeded(db, stock=3, deadline=0.3)
    with writer_lock_held(db):
        with pytest.raises(DeadlineExceeded, match="nothing was committed"):
            await store.place_order(
                LINES, idempotency_key=None, request_hash=None, events=order_events
            )
        # Reads never take the writer lock (WAL: readers do not wait for the writer).
        assert {item.id: item.stock for item in await store.list_menu()}["soup"] == 3
    placed = await store.place_order(
        LINES, idempotency_key=None, request_hash=None, events=order_events
    )
    assert placed.order.lines[0].item_id == "soup"
    assert {item.id: item.stock for item in await store.list_menu()}["soup"] == 2
    assert await store.count_orders() == 1  # the abandoned write never committed
    assert store.lock_waits >= 1
    assert store.busy_retries == 0
    await store.close()


async def test_writer_lock_off_ignores_the_flock(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = await open_store(f"sqlite:///{db}?writer_lock=off")
    assert isinstance(store, SqliteStore) and store.writer_lock is False
    assert not lock_file_exists(db)
    await store.seed_menu([MenuItem(id="soup", name="Soup", category="soups", price=5, stock=3)])
    with writer_lock_held(db):  # a holder of the flock alone does not stop it
        await store.place_order(LINES, idempotency_key=None, request_hash=None, events=order_events)
    assert await store.count_orders() == 1
    assert store.lock_waits == 0
    await store.close()


async def test_the_store_url_turns_the_writer_lock_on_and_off(tmp_path: Path) -> None:
    for query, expected in (("", True), ("?writer_lock=on", True), ("?writer_lock=off", False)):
        store = await open_store(f"sqlite:///{tmp_path}/db.sqlite{query}")
        try:
            assert isinstance(store, SqliteStore) and store.writer_lock is expected
        finally:
            await store.close()
    assert lock_file_exists(tmp_path / "db.sqlite")  # made by the first open
    with pytest.raises(ValueError, match="writer_lock"):
        await open_store(f"sqlite:///{tmp_path}/db.sqlite?writer_lock=maybe")


def lock_is_free(db: Path) -> bool:
    """Whether the writer flock can be taken right now (a second open file description
    of this process conflicts with the writer thread's, as another process's would)."""
    fd = os.open(str(db) + LOCK_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


async def test_the_writer_lock_is_free_before_any_caller_is_answered(tmp_path: Path) -> None:
    """The writer releases the flock as soon as its ``COMMIT`` returns, before it answers
    the callers (another process's writer need not wait while it does): a caller whose
    write returns with no other write pending finds the lock free, in a group commit and
    alone. (While other writes are pending, the writer may already hold the lock again
    for the next group: those probes prove nothing and are not counted.)"""
    db = tmp_path / "db.sqlite"
    store = await seeded(db, stock=100)
    in_flight = 0

    async def place_then_probe() -> bool | None:
        nonlocal in_flight
        in_flight += 1
        try:
            await store.place_order(
                LINES, idempotency_key=None, request_hash=None, events=order_events
            )
        finally:
            in_flight -= 1
        return lock_is_free(db) if in_flight == 0 else None

    for _ in range(5):
        probes = await asyncio.gather(*(place_then_probe() for _ in range(8)))
        assert [probe for probe in probes if probe is not None] == [True]  # the last one
    await store.set_stock("soup", 7)  # a write that runs alone, not in a group
    assert lock_is_free(db)
    assert store.commits >= 5 and store.largest_group >= 2  # groups did form
    await store.close()
