"""Fixtures of the store contract suite: every test runs once per adapter.

SQLite always runs (a fresh file per test). PostgreSQL runs on the session's
private server (``postgres_server`` in tests/conftest.py: a fresh database per
test, dropped afterwards). MongoDB runs when ``ORDERFLOW_MONGO_URL`` points at a
replica set (a fresh database per test, dropped afterwards); otherwise its part
of the suite is skipped with that reason.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import pytest

from orderflow.models.documents import MenuItem
from orderflow.models.store import Store
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.sqlite import SqliteStore

MONGO_URL_ENV = "ORDERFLOW_MONGO_URL"

TEST_MENU = [
    MenuItem(id="pizza", name="Pizza", description="test", category="pizza", price=1000, stock=10),
    MenuItem(id="cola", name="Cola", description="test", category="drinks", price=250, stock=5),
    MenuItem(id="last-slice", name="Last Slice", category="pizza", price=400, stock=7),
]


async def open_test_store(request: pytest.FixtureRequest, adapter: str, tmp_path: Path) -> Store:
    if adapter == "sqlite":
        return await SqliteStore.open(tmp_path / "data" / "store.db")
    if adapter == "postgresql":
        # Requested here, not in the signature: a SQLite-only run starts no PostgreSQL.
        return await PostgresStore.open(request.getfixturevalue("postgres_url"))
    url = os.environ.get(MONGO_URL_ENV)
    if not url:
        pytest.skip(f"{MONGO_URL_ENV} not set: no MongoDB replica set to run the contract against")
    from orderflow.models.store.mongodb import MongoStore

    return await MongoStore.open(url, database=f"orderflow_test_{uuid.uuid4().hex[:12]}")


async def dispose_test_store(store: Store) -> None:
    drop = getattr(store, "drop_database", None)
    try:
        if drop is not None:
            await drop()
    finally:
        await store.close()


async def backdate_outbox(store: Store, outbox_ids: Sequence[str], seconds: float) -> None:
    """Make outbox rows ``seconds`` older (created and, if set, published) in the database.

    The contract has no clock to turn, so the retention tests age rows where the
    adapter keeps them instead of waiting; pending rows stay pending.
    """
    ids = list(outbox_ids)
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        try:
            await conn.execute(
                "UPDATE outbox SET created_at = created_at - make_interval(secs => $1),"
                " published_at = published_at - make_interval(secs => $1)"  # NULL stays NULL
                " WHERE id = ANY($2::text[])",
                float(seconds),
                ids,
            )
        finally:
            await conn.close()
        return
    if isinstance(store, SqliteStore):
        raw = sqlite3.connect(store.path, timeout=30, isolation_level=None)
        try:
            marks = ",".join("?" * len(ids))
            raw.execute(
                "UPDATE outbox SET created_at = created_at - ?,"
                f" published_at = published_at - ? WHERE id IN ({marks})",  # NULL stays NULL
                [seconds, seconds, *ids],
            )
        finally:
            raw.close()
        return
    from orderflow.models.store.mongodb import MongoStore

    assert isinstance(store, MongoStore)
    # $subtract of null is null: a pending row stays pending.
    await store.outbox.update_many(
        {"_id": {"$in": ids}},
        [
            {
                "$set": {
                    "created_at": {"$subtract": ["$created_at", seconds]},
                    "published_at": {"$subtract": ["$published_at", seconds]},
                }
            }
        ],
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mongodb", marks=pytest.mark.mongo),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each adapter."""
    opened = await open_test_store(request, request.param, tmp_path)
    try:
        yield opened
    finally:
        await dispose_test_store(opened)


@pytest.fixture
async def menu_store(store: Store) -> Store:
    """A store seeded with ``TEST_MENU``."""
    assert await store.seed_menu(TEST_MENU) == len(TEST_MENU)
    return store


class LockHolder:
    """Another session of the same database holding a lock (what another process does).

    ``write_waiting()`` tells when a write of the store under test is waiting behind it
    (state, not time, so the tests synchronise on it).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release: Callable[[], Awaitable[None]] = _nothing
        self._pg: asyncpg.Connection | None = None

    async def write_waiting(self) -> bool:
        if isinstance(self.store, SqliteStore):
            return self.store.writes_in_flight > 0
        if self._pg is not None:
            return bool(await self._pg.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        return True  # MongoDB: a conflicting write does not wait, the driver retries it


async def _nothing() -> None:
    return None


_HOLD_WAL_INDEX_LOCKS = """
import fcntl, os, sys
shm = open(sys.argv[1], "r+b")
# Bytes 120-127 of the wal-index: the write, checkpoint, recovery and the five read
# locks (https://sqlite.org/walformat.html#locks). Held exclusively, nobody can read.
fcntl.lockf(shm, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120, os.SEEK_SET)
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def sqlite_unreadable(path: str) -> Iterator[None]:
    """Make a SQLite file unusable for readers too, as a stuck process holding every WAL
    lock would: another *process* (POSIX locks of one process never conflict with each
    other) holds all the wal-index locks until exit."""
    with held_by_another_process(_HOLD_WAL_INDEX_LOCKS, path + "-shm"):
        yield


@contextmanager
def held_by_another_process(script: str, path: str) -> Iterator[None]:
    """Run ``script`` with ``path`` in another Python process until exit: it takes its
    locks on ``path``, prints ``locked`` and holds them until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


@asynccontextmanager
async def write_locked(store: Store, item_id: str) -> AsyncIterator[LockHolder]:
    """Hold what a write of ``item_id``'s stock needs: SQLite's file write lock (``BEGIN
    EXCLUSIVE``; readers go on in WAL mode), PostgreSQL's row lock (``FOR UPDATE``),
    MongoDB's document (an open transaction that wrote it)."""
    holder = LockHolder(store)
    if isinstance(store, SqliteStore):
        raw = sqlite3.connect(store.path, isolation_level=None, timeout=5)
        raw.execute("BEGIN EXCLUSIVE")
        try:
            yield holder
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        holder._pg = await asyncpg.connect(store.dsn)
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("SELECT 1 FROM menu_items WHERE id = $1 FOR UPDATE", item_id)
            yield holder
            await transaction.rollback()
        finally:
            await conn.close()
            await holder._pg.close()
        return
    from orderflow.models.store.mongodb import MongoStore

    assert isinstance(store, MongoStore)
    async with store._client.start_session() as session:
        await session.start_transaction()
        await store.menu.update_one({"_id": item_id}, {"$inc": {"stock": 0}}, session=session)
        try:
            yield holder
        finally:
            await session.abort_transaction()


@asynccontextmanager
async def read_locked(store: Store) -> AsyncIterator[None]:
    """Shut readers out too: SQLite's wal-index locks held by another process, PostgreSQL's
    ``LOCK TABLE menu_items, orders IN ACCESS EXCLUSIVE MODE``. MongoDB has no such lock."""
    if isinstance(store, SqliteStore):
        with sqlite_unreadable(store.path):
            yield
        return
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("LOCK TABLE menu_items, orders IN ACCESS EXCLUSIVE MODE")
            yield
            await transaction.rollback()
        finally:
            await conn.close()
        return
    pytest.skip("MongoDB readers cannot be locked out from another session")
