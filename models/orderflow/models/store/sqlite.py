"""SQLite store: the embedded default (``sqlite:///.data/orderflow.db``).

Concurrency model, and why:

* **One dedicated thread and one connection per store.** ``sqlite3`` is
  blocking, so it must run off the event loop. SQLite admits one writer at a
  time for the whole file anyway, so a single thread per process loses no write
  throughput; it turns this process's concurrent requests into a FIFO queue
  instead of N connections busy-polling the same file lock (SQLite's busy
  handler sleeps up to 100 ms between polls, which is unfair and slow under
  load). A private executor also keeps store work out of the loop's default
  executor, which other code shares. Reads are sub-millisecond and go through
  the same queue.
* **Across processes** (several API workers on the same file) writers are
  serialised by ``BEGIN IMMEDIATE``: the write lock is taken before anything is
  read, so a check-then-decrement of stock can never interleave with another
  process's, and no deferred-transaction upgrade deadlock (``SQLITE_BUSY`` that
  the busy handler cannot resolve) can happen. The connection waits for the
  lock (``busy_timeout``), and a ``database is locked`` that still comes back
  is retried with back-off until ``lock_deadline`` -- it never reaches callers
  (after the deadline they get ``StoreUnavailable``).
* **WAL** lets readers proceed while a writer commits; ``synchronous=FULL``
  makes a committed order durable before its events are published.
* ``CHECK (stock >= 0)`` is the last line of defence: even a buggy query could
  not take stock below zero.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from orderflow.models.documents import (
    Delivery,
    DeliveryStatusChange,
    MenuItem,
    Order,
    OrderLine,
    OrderLineRequest,
    OrderStatusChange,
    delivery_status_rank,
    order_status_rank,
    utc_now,
)
from orderflow.models.store import (
    DeliveryEvents,
    DeliveryResult,
    OrderEvents,
    PlaceOrderResult,
    StatusChange,
    StatusTransition,
    TransitionEvents,
    check_stock,
    new_delivery,
    new_order,
    no_events,
    out_of_stock,
    wanted_quantities,
)
from orderflow.models.store.errors import (
    DeliveryNotFound,
    IdempotencyKeyReused,
    OrderNotFound,
    StoreUnavailable,
    UnknownItem,
)
from orderflow.models.store.outbox import OutboxMessage

T = TypeVar("T")

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` this code writes; a file with a newer one is refused.

Bump it only for a change that older code cannot work with (and add the
migration to ``_create_schema``). Additive objects created with ``IF NOT
EXISTS`` -- like the ``outbox_published`` index -- need no bump: every open runs
the whole script, so an existing file gets them, and older code still opens a
file that has them.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS menu_items (
    id          TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    category    TEXT NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    seed_stock  INTEGER NOT NULL CHECK (seed_stock >= 0)
) STRICT;

CREATE TABLE IF NOT EXISTS orders (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    total           INTEGER NOT NULL CHECK (total >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency_key
    ON orders (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS order_lines (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    line_no    INTEGER NOT NULL,
    item_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
) STRICT;
CREATE INDEX IF NOT EXISTS order_lines_item ON order_lines (item_id);

CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq      INTEGER NOT NULL,
    status   TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
) STRICT;

CREATE TABLE IF NOT EXISTS deliveries (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id),
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_order ON deliveries (order_id);

CREATE TABLE IF NOT EXISTS delivery_history (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (delivery_id, seq)
) STRICT;

CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    stream       TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    published_at REAL
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published ON outbox (published_at)
    WHERE published_at IS NOT NULL;
"""

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_MAX_SQL_VARIABLES = 500
_PRUNE_BATCH = 1000
"""Outbox rows deleted per transaction: a large backlog never holds the write lock long."""


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel/path.db`` -> ``rel/path.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(f"sqlite URL must look like sqlite:///path.db, got {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValueError(f"sqlite URL has no path: {url!r}")
    return path


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _chunks(values: Sequence[str], size: int = _MAX_SQL_VARIABLES) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqliteStore:
    """The :class:`orderflow.models.store.Store` contract on one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        lock_deadline: float = 120.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self.lock_deadline = lock_deadline
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.busy_retries = 0
        """How often the file was still locked after ``busy_timeout`` (then retried)."""

    # ----------------------------------------------------------------- opening

    @classmethod
    async def open_url(cls, url: str) -> SqliteStore:
        return await cls.open(sqlite_path_from_url(url))

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        lock_deadline: float = 120.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> SqliteStore:
        """Create the parent directory and the schema (idempotent, safe across processes)."""
        store = cls(
            path, busy_timeout=busy_timeout, lock_deadline=lock_deadline, synchronous=synchronous
        )
        if store.path != ":memory:":
            Path(store.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            await store._run(lambda conn: None)
        except BaseException:
            await store.close()
            raise
        return store

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _connect(self) -> sqlite3.Connection:
        """Runs on the store thread: the connection never leaves it."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._transaction(conn, _create_schema, "IMMEDIATE")
        return conn

    def _retry_busy(self, action: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.lock_deadline
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"sqlite file {self.path} stayed locked for {self.lock_deadline:g} s"
                    ) from exc
                self.busy_retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # --------------------------------------------------------------- plumbing

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        # Carry the caller's contextvars into the store thread: event factories
        # called inside the transaction build envelopes from the current
        # correlation scope (run_in_executor, unlike to_thread, does not copy it).
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn)

    def _transaction(
        self,
        conn: sqlite3.Connection,
        body: Callable[[sqlite3.Connection], T],
        mode: Literal["IMMEDIATE", "DEFERRED"],
    ) -> T:
        """Run ``body`` in one transaction; retry the whole of it while the file is locked."""

        def attempt() -> T:
            conn.execute(f"BEGIN {mode}")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry_busy(attempt)

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(functools.partial(self._transaction, body=body, mode="IMMEDIATE"))

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(functools.partial(self._transaction, body=body, mode="DEFERRED"))

    # ------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close_connection() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, close_connection)
        finally:
            self._executor.shutdown(wait=False)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # ------------------------------------------------------------------ menu

    async def seed_menu(self, items: Sequence[MenuItem]) -> int:
        rows = list(items)

        def body(conn: sqlite3.Connection) -> int:
            (position,) = conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM menu_items"
            ).fetchone()
            inserted = 0
            for item in rows:
                cursor = conn.execute(
                    # ON CONFLICT(id) only: unlike INSERT OR IGNORE it does not
                    # silently skip a row that violates a CHECK constraint.
                    "INSERT INTO menu_items"
                    " (id, position, name, description, category, price, stock, seed_stock)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        item.id,
                        position,
                        item.name,
                        item.description,
                        item.category,
                        item.price,
                        item.stock,
                        item.stock,
                    ),
                )
                if cursor.rowcount == 1:
                    inserted += 1
                    position += 1
            return inserted

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
    ) -> PlaceOrderResult:
        requested = list(lines)
        if not requested:
            raise ValueError("an order needs at least one line")
        wanted = wanted_quantities(requested)

        def body(conn: sqlite3.Connection) -> PlaceOrderResult:
            if idempotency_key is not None:
                row = conn.execute(
                    "SELECT id, request_hash FROM orders WHERE idempotency_key = ?",
                    (idempotency_key,),
                ).fetchone()
                if row is not None:
                    if row["request_hash"] != request_hash:
                        raise IdempotencyKeyReused(idempotency_key)
                    order = _load_order(conn, row["id"])
                    assert order is not None
                    return PlaceOrderResult(order=order, outbox=[], replayed=True)

            marks = ",".join("?" * len(wanted))
            items = {
                row["id"]: row
                for row in conn.execute(
                    f"SELECT id, name, price, stock FROM menu_items WHERE id IN ({marks})",
                    list(wanted),
                )
            }
            check_stock(wanted, items)
            for item_id, quantity in wanted.items():
                # BEGIN IMMEDIATE holds the write lock, so the guard cannot fail;
                # it (and CHECK (stock >= 0)) is there in case that ever changes.
                cursor = conn.execute(
                    "UPDATE menu_items SET stock = stock - ? WHERE id = ? AND stock >= ?",
                    (quantity, item_id, quantity),
                )
                if cursor.rowcount != 1:
                    raise out_of_stock(item_id, items[item_id], quantity)

            order = new_order(requested, items)
            now = order.created_at
            conn.execute(
                "INSERT INTO orders (id, status, total, created_at, updated_at,"
                " idempotency_key, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    order.id,
                    order.status,
                    order.total,
                    now,
                    now,
                    idempotency_key,
                    request_hash,
                ),
            )
            conn.executemany(
                "INSERT INTO order_lines (order_id, line_no, item_id, name, quantity, unit_price)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (order.id, n, line.item_id, line.name, line.quantity, line.unit_price)
                    for n, line in enumerate(order.lines)
                ],
            )
            conn.execute(
                "INSERT INTO order_history (order_id, seq, status, at) VALUES (?, 0, ?, ?)",
                (order.id, order.status, now),
            )
            outbox = list(events(order))
            _insert_outbox(conn, outbox)
            return PlaceOrderResult(order=order, outbox=outbox, replayed=False)

        return await self._write(body)

    async def get_order(self, order_id: str) -> Order | None:
        return await self._read(lambda conn: _load_order(conn, order_id))

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = order_status_rank(status)

        def body(conn: sqlite3.Connection) -> StatusChange:
            row = conn.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()
            if row is None:
                raise OrderNotFound(order_id)
            if rank <= order_status_rank(row["status"]):
                return StatusChange(changed=False)
            _set_status(conn, "orders", order_id, status, at)
            transition = StatusTransition(
                entity_id=order_id, order_id=order_id, previous=row["status"], status=status, at=at
            )
            outbox = list(events(transition))
            _insert_outbox(conn, outbox)
            return StatusChange(changed=True, outbox=outbox)

        return await self._write(body)

    async def count_orders(self, item_id: str | None = None) -> int:
        def body(conn: sqlite3.Connection) -> int:
            if item_id is None:
                row = conn.execute("SELECT COUNT(*) FROM orders").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(DISTINCT order_id) FROM order_lines WHERE item_id = ?",
                    (item_id,),
                ).fetchone()
            return int(row[0])

        return await self._read(body)

    # ------------------------------------------------------------ deliveries

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        def body(conn: sqlite3.Connection) -> DeliveryResult:
            row = conn.execute(
                "SELECT id FROM deliveries WHERE order_id = ?", (order_id,)
            ).fetchone()
            if row is not None:
                existing = _load_delivery(conn, "id", row["id"])
                assert existing is not None
                return DeliveryResult(existing, created=False)
            if conn.execute("SELECT 1 FROM orders WHERE id = ?", (order_id,)).fetchone() is None:
                raise OrderNotFound(order_id)
            delivery = new_delivery(order_id)
            now = delivery.created_at
            conn.execute(
                "INSERT INTO deliveries (id, order_id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (delivery.id, order_id, delivery.status, now, now),
            )
            conn.execute(
                "INSERT INTO delivery_history (delivery_id, seq, status, at) VALUES (?, 0, ?, ?)",
                (delivery.id, delivery.status, now),
            )
            outbox = list(events(delivery))
            _insert_outbox(conn, outbox)
            return DeliveryResult(delivery, created=True, outbox=outbox)

        return await self._write(body)

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = delivery_status_rank(status)

        def body(conn: sqlite3.Connection) -> StatusChange:
            row = conn.execute(
                "SELECT order_id, status FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                raise DeliveryNotFound(delivery_id)
            if rank <= delivery_status_rank(row["status"]):
                return StatusChange(changed=False)
            _set_status(conn, "deliveries", delivery_id, status, at)
            transition = StatusTransition(
                entity_id=delivery_id,
                order_id=row["order_id"],
                previous=row["status"],
                status=status,
                at=at,
            )
            outbox = list(events(transition))
            _insert_outbox(conn, outbox)
            return StatusChange(changed=True, outbox=outbox)

        return await self._write(body)

    # ---------------------------------------------------------------- outbox

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        def body(conn: sqlite3.Connection) -> list[OutboxMessage]:
            rows = conn.execute(
                "SELECT id, stream, envelope FROM outbox"
                " WHERE published_at IS NULL AND created_at <= ? ORDER BY seq LIMIT ?",
                (time.time() - min_age_seconds, limit),
            ).fetchall()
            return [
                OutboxMessage.from_json(
                    id=row["id"], stream=row["stream"], envelope_json=row["envelope"]
                )
                for row in rows
            ]

        return await self._read(body)

    async def mark_published(self, outbox_ids: Sequence[str]) -> None:
        ids = list(outbox_ids)
        if not ids:
            return

        def body(conn: sqlite3.Connection) -> None:
            now = time.time()
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE outbox SET published_at = ? WHERE published_at IS NULL"
                    f" AND id IN ({marks})",
                    [now, *chunk],
                )

        await self._write(body)

    async def prune_outbox(self, published_before_seconds: float) -> int:
        if published_before_seconds < 0:
            raise ValueError("published_before_seconds cannot be negative")
        cutoff = time.time() - published_before_seconds

        def body(conn: sqlite3.Connection) -> int:
            # The partial index outbox_published finds the rows; ``published_at < ?``
            # never matches NULL, so a pending row cannot be deleted.
            cursor = conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
                " WHERE published_at IS NOT NULL AND published_at < ? LIMIT ?)",
                (cutoff, _PRUNE_BATCH),
            )
            return cursor.rowcount

        # One short transaction per batch: other writers (orders!) queue between them.
        deleted = 0
        while True:
            batch = await self._write(body)
            deleted += batch
            if batch < _PRUNE_BATCH:
                return deleted

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """No notifications across processes on a file: sleep, and let the relay poll."""
        await asyncio.sleep(timeout)
        return False


# ------------------------------------------------------------------ helpers
# Module-level functions that run on the store thread inside a transaction.


def _create_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"database schema version {version} is newer than this code ({SCHEMA_VERSION})"
        )
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_HISTORY_TABLES = {
    "orders": ("order_history", "order_id"),
    "deliveries": ("delivery_history", "delivery_id"),
}


def _set_status(
    conn: sqlite3.Connection,
    table: Literal["orders", "deliveries"],
    entity_id: str,
    status: str,
    at: str,
) -> None:
    """Set the row's status and append it to the row's history (next ``seq``)."""
    history, key = _HISTORY_TABLES[table]
    conn.execute(
        f"UPDATE {table} SET status = ?, updated_at = ? WHERE id = ?",
        (status, utc_now(), entity_id),
    )
    conn.execute(
        f"INSERT INTO {history} ({key}, seq, status, at) VALUES"
        f" (?, (SELECT COUNT(*) FROM {history} WHERE {key} = ?), ?, ?)",
        (entity_id, entity_id, status, at),
    )


def _insert_outbox(conn: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    if not messages:
        return
    now = time.time()
    conn.executemany(
        "INSERT INTO outbox (id, stream, envelope, created_at) VALUES (?, ?, ?, ?)",
        [(message.id, message.stream, message.to_json(), now) for message in messages],
    )


def _load_delivery(conn: sqlite3.Connection, column: str, value: str) -> Delivery | None:
    assert column in ("id", "order_id")
    row = conn.execute(
        f"SELECT id, order_id, status, created_at, updated_at FROM deliveries WHERE {column} = ?",
        (value,),
    ).fetchone()
    if row is None:
        return None
    history = [
        DeliveryStatusChange(status=h["status"], at=h["at"])
        for h in conn.execute(
            "SELECT status, at FROM delivery_history WHERE delivery_id = ? ORDER BY seq",
            (row["id"],),
        )
    ]
    return Delivery(
        id=row["id"],
        order_id=row["order_id"],
        status=row["status"],
        history=history,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _load_order(conn: sqlite3.Connection, order_id: str) -> Order | None:
    row = conn.execute(
        "SELECT id, status, total, created_at, updated_at FROM orders WHERE id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        return None
    lines = [
        OrderLine(
            item_id=line["item_id"],
            name=line["name"],
            quantity=line["quantity"],
            unit_price=line["unit_price"],
        )
        for line in conn.execute(
            "SELECT item_id, name, quantity, unit_price FROM order_lines"
            " WHERE order_id = ? ORDER BY line_no",
            (order_id,),
        )
    ]
    history = [
        OrderStatusChange(status=h["status"], at=h["at"])
        for h in conn.execute(
            "SELECT status, at FROM order_history WHERE order_id = ? ORDER BY seq", (order_id,)
        )
    ]
    return Order(
        id=row["id"],
        lines=lines,
        total=row["total"],
        status=row["status"],
        history=history,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivery=_load_delivery(conn, "order_id", order_id),
    )
