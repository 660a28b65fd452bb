"""MongoDB store: the production adapter (``mongodb://host/orderflow?replicaSet=rs0``).

Written to PyMongo's native asyncio API (``AsyncMongoClient``, pymongo >= 4.10;
Motor is deprecated). How the contract is kept:

* Every multi-document change runs in ``session.with_transaction(callback)``
  (the async API awaits an async callback). The driver re-runs the callback on
  ``TransientTransactionError`` (e.g. a write conflict with a concurrent buyer)
  and retries the commit on ``UnknownTransactionCommitResult``, for up to 120 s.
  Callbacks therefore only compute and write; domain errors (``OutOfStock``)
  abort the transaction and propagate unchanged.
* Transactions read at ``snapshot`` and commit with ``w: majority``; the client
  default is ``w: majority`` / ``readConcern: majority`` for everything else.
* Stock is decremented with a conditional update ``{_id, stock: {$gte: q}}``
  inside the transaction; two buyers of the last item conflict, one of them is
  retried by the driver and then sees the new stock. A ``$jsonSchema``
  validator (``stock`` minimum 0) rejects a negative stock even if code were
  wrong.
* Unique indexes: the idempotency key (partial, only when present) and the
  delivery per order.
* Transactions need a replica set (or a sharded cluster); :meth:`MongoStore.open`
  checks and refuses a standalone server with a clear error.

* Deadline: the client's ``timeoutMS`` bounds every operation by the store's
  budget, and a transaction runs under ``pymongo.timeout`` with what is left of
  the caller's deadline; a timeout is ``DeadlineExceeded``, a commit whose result
  is unknown is ``OutcomeUnknown`` (never reported as "nothing happened").

This module opens the store, runs the transactions and keeps the menu; the
transactions' bodies are in :mod:`~orderflow.models.store.mongodb_orders`,
:mod:`~orderflow.models.store.mongodb_deliveries` and
:mod:`~orderflow.models.store.mongodb_cancel`, the outbox in
:mod:`~orderflow.models.store.mongodb_outbox`, collections, validators and indexes
in :mod:`~orderflow.models.store.mongodb_schema`, documents read back as models in
:mod:`~orderflow.models.store.mongodb_mapping`.

No MongoDB server runs in this project's CI; the contract suite in
``tests/store`` exercises this adapter when ``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pymongo
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

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
    mongodb_deliveries,
    mongodb_orders,
    mongodb_outbox,
    no_cancel_events,
    no_events,
    wanted_quantities,
)
from orderflow.models.store.cancellation import lifecycle_rank
from orderflow.models.store.deadline import (
    DEFAULT_DEADLINE_SECONDS,
    DeadlineExceeded,
    deadline_for,
    seconds_left,
)
from orderflow.models.store.errors import OutcomeUnknown, StoreUnavailable, UnknownItem
from orderflow.models.store.mongodb_mapping import menu_item_from
from orderflow.models.store.mongodb_schema import (
    DEFAULT_DATABASE,
    VALIDATORS,
    Collections,
    Doc,
    create_schema,
    require_transactions,
)
from orderflow.models.store.outbox import OutboxMessage

__all__ = ["DEFAULT_DATABASE", "VALIDATORS", "Doc", "MongoStore"]

T = TypeVar("T")


class MongoStore:
    """The :class:`orderflow.models.store.Store` contract on a MongoDB replica set."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: AsyncDatabase[Doc],
        *,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        self._client = client
        self.deadline = deadline
        """Seconds an operation may take when its caller set no deadline of its own."""
        self._db = database
        self._collections = Collections.of(database)
        self.menu: AsyncCollection[Doc] = self._collections.menu
        self.orders: AsyncCollection[Doc] = self._collections.orders
        self.deliveries: AsyncCollection[Doc] = self._collections.deliveries
        self.outbox: AsyncCollection[Doc] = self._collections.outbox

    # ----------------------------------------------------------------- opening

    @classmethod
    async def open_url(cls, url: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> MongoStore:
        return await cls.open(url, deadline=deadline)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        database: str | None = None,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> MongoStore:
        """Connect, require a replica set, create collections, validators and indexes.

        ``w`` and the read concern are forced to ``majority``; other client options
        (``replicaSet``, ``serverSelectionTimeoutMS``, TLS, credentials) come from ``url``.
        Connection problems raise :class:`StoreUnavailable`.
        """
        client: AsyncMongoClient[Doc] = AsyncMongoClient(
            url,
            w="majority",
            readConcernLevel="majority",
            retryWrites=True,
            # Client-side operation timeout: no single operation outlives the budget.
            timeoutMS=int(deadline * 1000),
        )
        try:
            db = (
                client[database]
                if database
                else client.get_default_database(default=DEFAULT_DATABASE)
            )
            store = cls(client, db, deadline=deadline)
            await require_transactions(client)
            await create_schema(db, store._collections)
        except PyMongoError as exc:
            await client.close()
            raise StoreUnavailable(f"cannot open the MongoDB store: {exc}") from exc
        except BaseException:
            await client.close()
            raise
        return store

    async def _transaction(self, callback: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """One transaction within the deadline (``pymongo.timeout``: the driver's retries of
        the callback and of the commit stop there). A timeout before the commit aborts the
        transaction; a commit whose result the driver could not learn is ``OutcomeUnknown``."""
        left = seconds_left(deadline_for(self.deadline))
        if left <= 0:  # pymongo.timeout(0) would not mean "already over"
            raise DeadlineExceeded("MongoDB store: the deadline had passed; nothing was done")
        try:
            with pymongo.timeout(left):
                async with self._client.start_session() as session:
                    return await session.with_transaction(
                        callback,
                        read_concern=ReadConcern("snapshot"),
                        write_concern=WriteConcern("majority"),
                    )
        except PyMongoError as exc:
            if exc.has_error_label("UnknownTransactionCommitResult"):
                raise OutcomeUnknown(f"MongoDB commit result unknown: {exc}") from exc
            if exc.timeout:
                raise DeadlineExceeded(
                    f"MongoDB store: not done within the deadline ({exc}); nothing was committed"
                ) from exc
            raise

    # ------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    async def drop_database(self) -> None:
        """For tests: remove everything this store created."""
        await self._client.drop_database(self._db.name)

    # ------------------------------------------------------------------ menu

    async def seed_menu(self, items: Sequence[MenuItem]) -> int:
        if not items:
            return 0
        last = await self.menu.find_one({}, sort=[("position", -1)], projection={"position": 1})
        start = 0 if last is None else int(last["position"]) + 1
        operations = [
            UpdateOne(
                {"_id": item.id},
                {
                    "$setOnInsert": {
                        "position": start + n,
                        "name": item.name,
                        "description": item.description,
                        "category": item.category,
                        "price": item.price,
                        "stock": item.stock,
                        "seed_stock": item.stock,
                    }
                },
                upsert=True,
            )
            for n, item in enumerate(items)
        ]
        result = await self.menu.bulk_write(operations, ordered=True)
        return result.upserted_count

    async def list_menu(self) -> list[MenuItem]:
        docs = await self.menu.find({}).sort([("position", 1), ("_id", 1)]).to_list()
        return [menu_item_from(doc) for doc in docs]

    async def set_stock(self, item_id: str, stock: int) -> None:
        if stock < 0:
            raise ValueError("stock cannot be negative")
        result = await self.menu.update_one({"_id": item_id}, {"$set": {"stock": stock}})
        if result.matched_count == 0:
            raise UnknownItem([item_id])

    async def refill(self, stock: int | None = None) -> int:
        if stock is not None and stock < 0:
            raise ValueError("stock cannot be negative")
        if stock is None:
            result = await self.menu.update_many({}, [{"$set": {"stock": "$seed_stock"}}])
        else:
            result = await self.menu.update_many({}, {"$set": {"stock": stock}})
        return result.matched_count

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

        async def callback(session: AsyncClientSession) -> PlaceOrderResult:
            return await mongodb_orders.place_order_in(
                self._collections,
                session,
                requested,
                wanted,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                events=events,
                simulate=simulate,
                customer=customer,
            )

        try:
            return await self._transaction(callback)
        except DuplicateKeyError:
            # A concurrent request with the same Idempotency-Key committed first.
            replayed = await mongodb_orders.replay_order(
                self._collections, idempotency_key, request_hash, None
            )
            if replayed is None:
                raise
            return replayed

    async def get_order(self, order_id: str) -> Order | None:
        return await mongodb_orders.get_order(self._collections, order_id)

    async def recent_orders(self, limit: int) -> list[Order]:
        return await mongodb_orders.recent_orders(self._collections, limit)

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = lifecycle_rank(status)

        async def callback(session: AsyncClientSession) -> StatusChange:
            return await mongodb_orders.update_order_status_in(
                self._collections, session, order_id, status, rank, at, events
            )

        return await self._transaction(callback)

    async def cancel_order(
        self, order_id: str, events: CancelEvents = no_cancel_events
    ) -> CancelResult:
        async def callback(session: AsyncClientSession) -> CancelResult:
            return await mongodb_orders.cancel_order_in(
                self._collections, session, order_id, events
            )

        return await self._transaction(callback)

    async def count_orders(self, item_id: str | None = None) -> int:
        return await mongodb_orders.count_orders(self._collections, item_id)

    # ------------------------------------------------------------ deliveries

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        async def callback(session: AsyncClientSession) -> DeliveryResult:
            return await mongodb_deliveries.create_delivery_in(
                self._collections, session, order_id, events
            )

        try:
            return await self._transaction(callback)
        except DuplicateKeyError:
            # Another worker created this order's delivery concurrently.
            existing = await mongodb_deliveries.existing_delivery(self._collections, order_id)
            if existing is None:
                raise
            return existing

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = delivery_status_rank(status)

        async def callback(session: AsyncClientSession) -> StatusChange:
            return await mongodb_deliveries.update_delivery_status_in(
                self._collections, session, delivery_id, status, rank, at, events
            )

        return await self._transaction(callback)

    # ---------------------------------------------------------------- outbox

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        return await mongodb_outbox.outbox_pending(self.outbox, limit, min_age_seconds)

    async def mark_published(self, outbox_ids: Sequence[str]) -> None:
        await mongodb_outbox.mark_published(self.outbox, outbox_ids)

    async def prune_outbox(self, published_before_seconds: float) -> int:
        return await mongodb_outbox.prune_outbox(self.outbox, published_before_seconds)

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """Polling fallback: the relay is not woken (see mongodb_outbox)."""
        return await mongodb_outbox.wait_for_outbox(timeout)
