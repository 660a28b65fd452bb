"""SQLite store: the embedded default (``sqlite:///.data/orderflow.db``).

Concurrency model, and why (the threads and the deadline are in
:mod:`orderflow.models.store.sqlite_threads`, the group commit in
:mod:`~orderflow.models.store.sqlite_group`, the connections' pragmas and the URL's
options in :mod:`~orderflow.models.store.sqlite_connect`, the schema in
:mod:`~orderflow.models.store.sqlite_schema`, shared statements in
:mod:`~orderflow.models.store.sqlite_queries`):

* **One writer thread and connection, and reader threads with their own
  connections, per store.** ``sqlite3`` is blocking, so it must run off the
  event loop. SQLite admits one writer at a time for the whole file, so a single
  writer per process loses no write throughput; it turns this process's
  concurrent writes into a FIFO queue instead of N connections busy-polling the
  same file lock (SQLite's busy handler sleeps up to 100 ms between polls, which
  is unfair and slow under load). Reads run on the reader threads: in WAL mode
  a reader never waits for a writer, so a write blocked on the file lock (held
  by another process) does not hold the menu or an order lookup up.
* **Group commit.** Each ``COMMIT`` with ``synchronous=FULL`` is an fsync, and
  the fsync, not the statements, was what a write cost. So the writer thread
  commits the writes already queued when it becomes free in one transaction,
  each in its own savepoint: a write that fails (``OutOfStock``...) or misses its
  deadline is rolled back alone, the others commit together. It never waits for
  writes to come, so at low load a group is one write. ``group_commit=False``
  (``sqlite:///path.db?group_commit=off``) gives each write its own transaction;
  ``commits``, ``jobs_committed`` and ``largest_group`` count what happened.
* **Across processes** (the API and the workers on the same file) writers are
  serialised by ``BEGIN IMMEDIATE``: the write lock is taken before anything is
  read, so a check-then-decrement of stock can never interleave with another
  process's, and no deferred-transaction upgrade deadlock (``SQLITE_BUSY`` that
  the busy handler cannot resolve) can happen. Before it each writer thread
  takes a ``flock`` on ``<db>-writer.lock`` for the group, which wakes the next
  process at once where SQLite's busy handler sleeps up to 100 ms between polls
  (:mod:`~orderflow.models.store.sqlite_writer_lock`; ``?writer_lock=off``).
  Writers without it (the ``sqlite3`` CLI, an older release) still meet the
  busy timeout, and a ``database is locked`` that still comes back is retried
  with back-off -- it never reaches callers.
* **Every operation has a deadline** (the caller's, see
  :mod:`orderflow.models.store.deadline`, or ``deadline`` seconds from the
  call). Lock waits take only what is left of it; past it the caller gets
  ``DeadlineExceeded`` (a ``StoreUnavailable``) and the transaction is
  abandoned: rolled back, and provably never committed later.
* ``CHECK (stock >= 0)`` is the last line of defence: even a buggy query could
  not take stock below zero.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from orderflow.models.documents import (
    Customer,
    MenuItem,
    Order,
    OrderLineRequest,
    delivery_status_rank,
)
from orderflow.models.store import (
    CancelEvents,
    CancelResult,
    DeliveryEvents,
    DeliveryResult,
    OrderEvents,
    PlaceOrderResult,
    StatusChange,
    TransitionEvents,
    check_recent_limit,
    no_cancel_events,
    no_events,
    sqlite_cancel,
    sqlite_status,
    wanted_quantities,
)
from orderflow.models.store import sqlite_outbox as outbox
from orderflow.models.store import sqlite_queries as queries
from orderflow.models.store.cancellation import lifecycle_rank
from orderflow.models.store.deadline import DEFAULT_DEADLINE_SECONDS, deadline_for
from orderflow.models.store.errors import UnknownItem
from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.sqlite_connect import (
    connect_reader,
    connect_writer,
    shareable_path,
    sqlite_path_from_url,
    url_options,
)
from orderflow.models.store.sqlite_schema import SCHEMA_VERSION
from orderflow.models.store.sqlite_threads import Job, StoreThreads, transaction
from orderflow.models.store.sqlite_writer_lock import WriterFileLock, writer_lock_supported

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "SqliteStore", "sqlite_path_from_url"]


class SqliteStore:
    """The :class:`orderflow.models.store.Store` contract on one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        readers: int = 2,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        group_commit: bool = True,
        writer_lock: bool = True,
    ) -> None:
        self.path = shareable_path(path)
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        self.busy_timeout = busy_timeout
        """Longest single wait for the file lock; never more than the deadline leaves."""
        self.deadline = deadline
        """Seconds an operation may take when its caller set no deadline of its own."""
        self.synchronous = synchronous
        self.group_commit = group_commit
        """Commit the writes already queued together, each in its own savepoint (see
        :mod:`~orderflow.models.store.sqlite_group`); off: one transaction per write.
        ``sqlite:///path.db?group_commit=off`` turns it off from a store URL."""
        self.busy_retries = 0
        """How often the file was still locked after the busy timeout (then retried)."""
        self._writer_lock = (
            WriterFileLock(self.path) if writer_lock and writer_lock_supported() else None
        )
        self._threads = StoreThreads(
            self.path,
            connect_writer=self._connect_writer,
            connect_reader=self._connect_reader,
            readers=readers,
            busy_timeout=busy_timeout,
            on_busy=self._busy,
            group_commit=group_commit,
            writer_lock=self._writer_lock,
        )

    # ----------------------------------------------------------------- opening

    @classmethod
    async def open_url(cls, url: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> SqliteStore:
        """Open ``sqlite:///path.db``; ``?group_commit=off`` turns group commit off,
        ``?writer_lock=off`` the cross-process writer lock, ``?synchronous=normal``
        the fsync of every commit (what that risks:
        :func:`~orderflow.models.store.sqlite_connect.synchronous_from_url`)."""
        return await cls.open(sqlite_path_from_url(url), deadline=deadline, **url_options(url))

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        readers: int = 2,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        group_commit: bool = True,
        writer_lock: bool = True,
    ) -> SqliteStore:
        """Create the parent directory and the schema (idempotent, safe across processes)."""
        store = cls(
            path,
            busy_timeout=busy_timeout,
            deadline=deadline,
            readers=readers,
            synchronous=synchronous,
            group_commit=group_commit,
            writer_lock=writer_lock,
        )
        Path(store.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            await store._write(lambda conn: None)
        except BaseException:
            await store.close()
            raise
        return store

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _connect_writer(self, job: Job) -> sqlite3.Connection:
        return connect_writer(self.path, job, self.busy_timeout, self.synchronous, self._busy)

    def _connect_reader(self, job: Job) -> sqlite3.Connection:
        return connect_reader(self.path, self.busy_timeout)

    @property
    def writes_in_flight(self) -> int:
        """Writes asked for and not answered yet (waiting for the writer thread or running)."""
        return self._threads.in_flight["write"]

    @property
    def commits(self) -> int:
        """``COMMIT``s that kept at least one write (a group commit counts once)."""
        return self._threads.writer.commits

    @property
    def jobs_committed(self) -> int:
        """Writes those commits kept; ``jobs_committed / commits`` is the mean group size."""
        return self._threads.writer.jobs_committed

    @property
    def largest_group(self) -> int:
        """Most writes one ``COMMIT`` kept."""
        return self._threads.writer.largest_group

    @property
    def writer_lock(self) -> bool:
        """Whether writes take the cross-process writer lock (off by option, or no ``fcntl``)."""
        return self._writer_lock is not None

    @property
    def lock_waits(self) -> int:
        """Groups whose writer found the writer lock held by another process and waited."""
        return self._writer_lock.waits if self._writer_lock is not None else 0

    def _busy(self) -> None:
        self.busy_retries += 1

    # --------------------------------------------------------------- plumbing

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body`` in ``BEGIN IMMEDIATE``: its own transaction, or its own savepoint in a
        group commit; all or nothing either way."""
        return await self._threads.write(body, deadline=deadline_for(self.deadline))

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        run = functools.partial(self._read_transaction, body=body)
        return await self._threads.run(run, write=False, deadline=deadline_for(self.deadline))

    def _read_transaction(
        self, conn: sqlite3.Connection, job: Job, body: Callable[[sqlite3.Connection], T]
    ) -> T:
        return transaction(conn, job, body, "DEFERRED", self.busy_timeout, self._busy)

    # ------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        await self._threads.close()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # ------------------------------------------------------------------ menu

    async def seed_menu(self, items: Sequence[MenuItem]) -> int:
        rows = list(items)

        def body(conn: sqlite3.Connection) -> int:
            return queries.seed_menu(conn, rows)

        return await self._write(body)

    async def list_menu(self) -> list[MenuItem]:
        def body(conn: sqlite3.Connection) -> list[MenuItem]:
            rows = conn.execute(
                "SELECT id, name, description, category, price, stock FROM menu_items"
                " ORDER BY position, id"
            ).fetchall()
            return [MenuItem(**dict(row)) for row in rows]

        return await self._read(body)

    async def set_stock(self, item_id: str, stock: int) -> None:
        if stock < 0:
            raise ValueError("stock cannot be negative")

        def body(conn: sqlite3.Connection) -> None:
            cursor = conn.execute("UPDATE menu_items SET stock = ? WHERE id = ?", (stock, item_id))
            if cursor.rowcount == 0:
                raise UnknownItem([item_id])

        await self._write(body)

    async def refill(self, stock: int | None = None) -> int:
        if stock is not None and stock < 0:
            raise ValueError("stock cannot be negative")

        def body(conn: sqlite3.Connection) -> int:
            if stock is None:
                cursor = conn.execute("UPDATE menu_items SET stock = seed_stock")
            else:
                cursor = conn.execute("UPDATE menu_items SET stock = ?", (stock,))
            return cursor.rowcount

        return await self._write(body)

    # ---------------------------------------------------------------- orders

    async def place_order(
        self,
        lines: Sequence[OrderLineRequest],
        *,
        idempotency_key: str | None,
        request_hash: str | None,
        events: OrderEvents,
        simulate: bool = True,
        customer: Customer | None = None,
    ) -> PlaceOrderResult:
        requested = list(lines)
        if not requested:
            raise ValueError("an order needs at least one line")
        wanted = wanted_quantities(requested)

        def body(conn: sqlite3.Connection) -> PlaceOrderResult:
            return queries.place_order(
                conn, requested, wanted, idempotency_key, request_hash, events, simulate, customer
            )

        return await self._write(body)

    async def get_order(self, order_id: str) -> Order | None:
        return await self._read(lambda conn: queries.load_order(conn, order_id))

    async def recent_orders(self, limit: int) -> list[Order]:
        check_recent_limit(limit)
        return await self._read(lambda conn: queries.recent_orders(conn, limit))

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = lifecycle_rank(status)

        def body(conn: sqlite3.Connection) -> StatusChange:
            return sqlite_status.update_order_status(conn, order_id, rank, status, at, events)

        return await self._write(body)

    async def cancel_order(
        self, order_id: str, events: CancelEvents = no_cancel_events
    ) -> CancelResult:
        return await self._write(lambda conn: sqlite_cancel.cancel_order(conn, order_id, events))

    async def count_orders(self, item_id: str | None = None) -> int:
        return await self._read(lambda conn: queries.count_orders(conn, item_id))

    # ------------------------------------------------------------ deliveries

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        def body(conn: sqlite3.Connection) -> DeliveryResult:
            return queries.create_delivery(conn, order_id, events)

        return await self._write(body)

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = delivery_status_rank(status)

        def body(conn: sqlite3.Connection) -> StatusChange:
            return sqlite_status.update_delivery_status(conn, delivery_id, rank, status, at, events)

        return await self._write(body)

    # ---------------------------------------------------------------- outbox

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        return await self._read(lambda conn: outbox.pending(conn, limit, min_age_seconds))

    async def mark_published(self, outbox_ids: Sequence[str]) -> None:
        ids = list(outbox_ids)
        if ids:
            await self._write(lambda conn: outbox.mark_published(conn, ids))

    async def prune_outbox(self, published_before_seconds: float) -> int:
        if published_before_seconds < 0:
            raise ValueError("published_before_seconds cannot be negative")
        cutoff = time.time() - published_before_seconds
        # One short transaction per batch: other writers (orders!) queue between them.
        deleted = 0
        while True:
            batch = await self._write(lambda conn: outbox.prune_batch(conn, cutoff))
            deleted += batch
            if batch < outbox.PRUNE_BATCH:
                return deleted

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """No notifications across processes on a file: sleep, and let the relay poll."""
        await asyncio.sleep(timeout)
        return False
