"""PostgreSQL store: ``postgresql://user:pass@host:5432/orderflow`` (or ``postgres://``).

Driver: asyncpg, chosen by ``benchmarks/pg_drivers.py`` (the same order
transaction with psycopg 3 and asyncpg; see docs/store.md). This module is what
the store does; the SQL is in :mod:`orderflow.models.store.postgres_sql`, the
pool, schema creation and error handling in
:mod:`orderflow.models.store.postgres_pool`, the outbox reads and the ``LISTEN``
connection in :mod:`orderflow.models.store.postgres_outbox`.

Concurrency model, and why:

* **A pool of connections per store** (``asyncpg.create_pool``; 1 to 10 by
  default, ``?pool_min_size=&pool_max_size=`` in the URL). Unlike SQLite's single
  writer, PostgreSQL runs transactions in parallel and locks rows, not the
  database, so concurrent requests of a process each get a connection, and
  orders of different dishes never wait for each other.
* **READ COMMITTED plus explicit row locks**, not SERIALIZABLE: every
  read-then-write takes the lock of what it changes first (``FOR NO KEY
  UPDATE``: the stock rows in id order, the order or delivery row of a status
  update), so a check can never be overtaken by another transaction and no
  serialization failures need retrying. Two buyers of the last item queue on
  its row; the second then reads the stock the first left.
* **Guarded decrement** (``stock >= quantity`` in the ``UPDATE``) and ``CHECK
  (stock >= 0)``: even without the lock, stock could not go below zero.
* **Unique constraints decide races**: ``orders_idempotency_key`` (the loser of
  two requests with one key rolls back and replays the winner's order) and
  ``deliveries_order`` (``ON CONFLICT DO NOTHING`` waits for the winner).
* Every operation keeps a deadline (lock and statement timeouts, pool acquire;
  see :mod:`orderflow.models.store.postgres_pool`): past it the transaction is
  rolled back, never committed, and ``DeadlineExceeded`` raised.
* Deadlocks (not expected: locks are taken in one order) re-run the
  transaction and its event factory; a lost server is ``StoreUnavailable``.
* **Orders share commits** (:mod:`orderflow.models.store.postgres_group`): an
  order holds its items' row locks through its ``COMMIT``, so orders of one
  dish would run one flush at a time; the orders queued together run in one
  transaction, a savepoint each (``?group_commit=off``: one each). **So do the
  workers' statuses** (:mod:`orderflow.models.store.postgres_status`), in a lane for
  orders and one for deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # noqa: F401 - first: without the driver this import fails (open_store: what to install)

from orderflow.models.documents import (
    Customer,
    Delivery,
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
    new_delivery,
    no_cancel_events,
    no_events,
    postgres_cancel,
    postgres_place,
    postgres_status,
)
from orderflow.models.store import postgres_outbox as outbox
from orderflow.models.store import postgres_sql as sql
from orderflow.models.store.cancellation import lifecycle_rank
from orderflow.models.store.deadline import DEFAULT_DEADLINE_SECONDS
from orderflow.models.store.errors import (
    DeliveryNotFound,
    OrderNotFound,
    UnknownItem,
)
from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.postgres_group import GroupCommit
from orderflow.models.store.postgres_outbox import OutboxNotifications
from orderflow.models.store.postgres_place import load_order
from orderflow.models.store.postgres_pool import (
    Connection,
    PostgresPool,
    affected_rows,
    group_commit_from_url,
    split_postgres_url,
)


class PostgresStore:
    """The :class:`orderflow.models.store.Store` contract on a PostgreSQL database."""

    def __init__(
        self, pool: PostgresPool, dsn: str, *, connect_timeout: float, group_commit: bool = True
    ) -> None:
        self._pool = pool
        self.dsn = dsn
        self._notifications = OutboxNotifications(dsn, connect_timeout=connect_timeout)
        self._orders = GroupCommit(pool, enabled=group_commit, prelude=postgres_place.lock_items)
        self._statuses = postgres_status.StatusLanes(pool, enabled=group_commit)

    @property
    def group_commit(self) -> bool:
        """Whether ``place_order`` calls share transactions (``?group_commit=off``: not)."""
        return self._orders.enabled

    @property
    def commits(self) -> int:
        """``COMMIT``s of ``place_order`` that kept at least one order (a group counts once)."""
        return self._orders.commits

    @property
    def jobs_committed(self) -> int:
        """``place_order`` calls those commits kept (replays included)."""
        return self._orders.jobs_committed

    @property
    def status_commits(self) -> int:
        """``COMMIT``s of order and delivery statuses (a group counts once)."""
        return self._statuses.commits

    @property
    def statuses_committed(self) -> int:
        """Status calls those commits kept."""
        return self._statuses.jobs_committed

    @property
    def largest_group(self) -> int:
        """Most ``place_order`` calls one ``COMMIT`` kept."""
        return self._orders.largest_group

    # ----------------------------------------------------------------- opening

    @classmethod
    async def open_url(
        cls, url: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS
    ) -> PostgresStore:
        dsn, sizes = split_postgres_url(url)
        return await cls.open(
            dsn,
            min_size=sizes.get("pool_min_size", 1),
            max_size=sizes.get("pool_max_size", 10),
            deadline=deadline,
            group_commit=group_commit_from_url(url),
        )

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        group_commit: bool = True,
    ) -> PostgresStore:
        """Open the pool and create the schema (idempotent, safe across processes).

        ``deadline``: seconds an operation may take when its caller set none;
        ``group_commit``: concurrent ``place_order`` calls share transactions."""
        pool = await PostgresPool.open(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )
        return cls(pool, dsn, connect_timeout=connect_timeout, group_commit=group_commit)

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        if self._pool.closed:
            return
        try:
            await self._orders.close()
            await self._statuses.close()
            await self._notifications.close()
        finally:
            await self._pool.close()

    async def ping(self) -> None:
        await self._pool.read(lambda conn: conn.fetchval("SELECT 1"))

    # ------------------------------------------------------------------ menu

    async def seed_menu(self, items: Sequence[MenuItem]) -> int:
        rows = list(items)

        async def body(conn: Connection) -> int:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.SEED_LOCK)
            position = await conn.fetchval(sql.NEXT_POSITION)
            inserted = 0
            for item in rows:
                status = await conn.execute(
                    sql.SEED_ITEM,
                    item.id,
                    position,
                    item.name,
                    item.description,
                    item.category,
                    item.price,
                    item.stock,
                )
                if affected_rows(status) == 1:
                    inserted += 1
                    position += 1
            return inserted

        return await self._pool.transaction(body)

    async def list_menu(self) -> list[MenuItem]:
        rows = await self._pool.read(lambda conn: conn.fetch(sql.LIST_MENU))
        return [MenuItem(**dict(row)) for row in rows]

    async def set_stock(self, item_id: str, stock: int) -> None:
        if stock < 0:
            raise ValueError("stock cannot be negative")
        status = await self._pool.read(lambda conn: conn.execute(sql.SET_STOCK, item_id, stock))
        if affected_rows(status) == 0:
            raise UnknownItem([item_id])

    async def refill(self, stock: int | None = None) -> int:
        if stock is not None and stock < 0:
            raise ValueError("stock cannot be negative")
        if stock is None:
            status = await self._pool.read(lambda conn: conn.execute(sql.REFILL_TO_SEED))
        else:
            status = await self._pool.read(lambda conn: conn.execute(sql.REFILL_TO, stock))
        return affected_rows(status)

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
        return await postgres_place.place_order(
            self._pool,
            self._orders,
            lines,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            events=events,
            simulate=simulate,
            customer=customer,
        )

    async def get_order(self, order_id: str) -> Order | None:
        return await self._pool.read(lambda conn: load_order(conn, order_id))

    async def recent_orders(self, limit: int) -> list[Order]:
        check_recent_limit(limit)
        rows = await self._pool.read(lambda conn: conn.fetch(sql.RECENT_ORDERS, limit))
        return [Order.model_validate_json(row[0]) for row in rows]

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = lifecycle_rank(status)
        return await postgres_status.update_status(
            self._statuses.orders, sql.UPDATE_ORDER_STATUS, order_id, status, rank, at, events,
            OrderNotFound,
        )  # fmt: skip

    async def cancel_order(
        self, order_id: str, events: CancelEvents = no_cancel_events
    ) -> CancelResult:
        return await self._pool.transaction(
            lambda conn: postgres_cancel.cancel_order(conn, order_id, events)
        )

    async def count_orders(self, item_id: str | None = None) -> int:
        if item_id is None:
            count = await self._pool.read(lambda conn: conn.fetchval(sql.COUNT_ORDERS))
        else:
            count = await self._pool.read(
                lambda conn: conn.fetchval(sql.COUNT_ORDERS_OF_ITEM, item_id)
            )
        return int(count)

    # ------------------------------------------------------------ deliveries

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        async def existing(conn: Connection, recipient: Customer | None) -> DeliveryResult | None:
            delivery_id = await conn.fetchval(sql.FIND_DELIVERY_OF_ORDER, order_id)
            if delivery_id is None:
                return None
            delivery = await _load_delivery(conn, delivery_id)
            assert delivery is not None
            return DeliveryResult(delivery, created=False, recipient=recipient)

        async def body(conn: Connection) -> DeliveryResult:
            order = await conn.fetchrow(sql.ORDER_RECIPIENT, order_id)
            if order is None:
                raise OrderNotFound(order_id)
            recipient = None if order[0] is None else Customer.model_validate_json(order[0])
            found = await existing(conn, recipient)
            if found is not None:
                return found
            delivery = new_delivery(order_id)
            rank = delivery_status_rank(delivery.status)
            args = (delivery.id, order_id, delivery.status, rank, delivery.created_at)
            if await conn.fetchval(sql.INSERT_DELIVERY, *args) == 0:
                # A concurrent call created it; ON CONFLICT waited for its commit.
                found = await existing(conn, recipient)
                assert found is not None
                return found
            messages = list(events(delivery))
            await outbox.insert_outbox(conn, messages)
            return DeliveryResult(delivery, created=True, outbox=messages, recipient=recipient)

        return await self._pool.transaction(body)

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = delivery_status_rank(status)
        return await postgres_status.update_status(
            self._statuses.deliveries, sql.UPDATE_DELIVERY_STATUS, delivery_id, status, rank, at,
            events, DeliveryNotFound,
        )  # fmt: skip

    # ---------------------------------------------------------------- outbox

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        return await self._pool.read(
            lambda conn: outbox.outbox_pending(conn, limit, min_age_seconds)
        )

    async def mark_published(self, outbox_ids: Sequence[str]) -> None:
        await self._pool.read(lambda conn: outbox.mark_published(conn, outbox_ids))

    async def prune_outbox(self, published_before_seconds: float) -> int:
        return await self._pool.read(
            lambda conn: outbox.prune_outbox(conn, published_before_seconds)
        )

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """Woken by ``NOTIFY`` (see :class:`OutboxNotifications`)."""
        return await self._notifications.wait(timeout)


# ------------------------------------------------------------------ helpers


async def _load_delivery(conn: Connection, delivery_id: str) -> Delivery | None:
    document = await conn.fetchval(sql.LOAD_DELIVERY, delivery_id)
    return None if document is None else Delivery.model_validate_json(document)
