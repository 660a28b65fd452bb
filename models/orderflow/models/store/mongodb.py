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

No MongoDB server runs in this project's CI; the contract suite in
``tests/store`` exercises this adapter when ``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pymongo
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from orderflow.models.documents import (
    CANCELLED,
    DELIVERY_STATUSES,
    ORDER_STATUS_RANKS,
    Customer,
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
    CancelEvents,
    CancelResult,
    DeliveryEvents,
    DeliveryResult,
    OrderEvents,
    PlaceOrderResult,
    StatusChange,
    StatusTransition,
    TransitionEvents,
    check_recent_limit,
    check_stock,
    new_delivery,
    new_order,
    no_cancel_events,
    no_events,
    out_of_stock,
    wanted_quantities,
)
from orderflow.models.store.cancellation import lifecycle_rank
from orderflow.models.store.deadline import (
    DEFAULT_DEADLINE_SECONDS,
    DeadlineExceeded,
    deadline_for,
    seconds_left,
)
from orderflow.models.store.errors import (
    DeliveryNotFound,
    IdempotencyKeyReused,
    OrderNotFound,
    OutcomeUnknown,
    StoreUnavailable,
    UnknownItem,
)
from orderflow.models.store.mongodb_cancel import cancel_order_doc
from orderflow.models.store.outbox import OutboxMessage

T = TypeVar("T")
Doc = dict[str, Any]

DEFAULT_DATABASE = "orderflow"

_INT = {"bsonType": ["int", "long"]}

VALIDATORS: dict[str, Doc] = {
    "menu": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": [
                "_id",
                "position",
                "name",
                "description",
                "category",
                "price",
                "stock",
                "seed_stock",
            ],
            "properties": {
                "_id": {"bsonType": "string"},
                "name": {"bsonType": "string"},
                "description": {"bsonType": "string"},
                "category": {"bsonType": "string"},
                "position": {**_INT, "minimum": 0},
                "price": {**_INT, "minimum": 0},
                "stock": {**_INT, "minimum": 0},
                "seed_stock": {**_INT, "minimum": 0},
            },
        }
    },
    "orders": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "lines", "total", "status", "status_rank", "history"],
            "properties": {
                "_id": {"bsonType": "string"},
                "total": {**_INT, "minimum": 0},
                "status": {"enum": list(ORDER_STATUS_RANKS)},
                "lines": {"bsonType": "array", "minItems": 1},
                "history": {"bsonType": "array"},
                "simulate": {"bsonType": "bool"},
                # Delivery details (personal data, kept here only); absent without them.
                "customer": {
                    "bsonType": "object",
                    "required": ["name", "address", "phone"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"bsonType": "string"},
                        "address": {"bsonType": "string"},
                        "phone": {"bsonType": "string"},
                    },
                },
            },
        }
    },
    "deliveries": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "order_id", "status", "status_rank", "history"],
            "properties": {
                "_id": {"bsonType": "string"},
                "order_id": {"bsonType": "string"},
                "status": {"enum": list(DELIVERY_STATUSES)},
                "history": {"bsonType": "array"},
            },
        }
    },
    "outbox": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "stream", "envelope", "created_at"],
            "properties": {
                "stream": {"bsonType": "string"},
                "envelope": {"bsonType": "string"},
            },
        }
    },
}


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
        self.menu: AsyncCollection[Doc] = database["menu"]
        self.orders: AsyncCollection[Doc] = database["orders"]
        self.deliveries: AsyncCollection[Doc] = database["deliveries"]
        self.outbox: AsyncCollection[Doc] = database["outbox"]

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
            await store._require_transactions()
            await store._create_schema()
        except PyMongoError as exc:
            await client.close()
            raise StoreUnavailable(f"cannot open the MongoDB store: {exc}") from exc
        except BaseException:
            await client.close()
            raise
        return store

    async def _require_transactions(self) -> None:
        hello = await self._client.admin.command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            raise StoreUnavailable(
                "the MongoDB store needs a replica set (transactions); this server is standalone."
                " Start mongod with --replSet and run rs.initiate()"
            )

    async def _create_schema(self) -> None:
        existing = set(await self._db.list_collection_names())
        for name, validator in VALIDATORS.items():
            if name in existing:
                await self._db.command(
                    {"collMod": name, "validator": validator, "validationLevel": "strict"}
                )
            else:
                # CollectionInvalid: another process created it meanwhile.
                with contextlib.suppress(CollectionInvalid):
                    await self._db.create_collection(
                        name,
                        validator=validator,
                        validationLevel="strict",
                        validationAction="error",
                    )
        await self.orders.create_index(
            [("idempotency_key", ASCENDING)],
            name="orders_idempotency_key",
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
        )
        await self.orders.create_index([("lines.item_id", ASCENDING)], name="orders_item")
        await self.orders.create_index([("created_at", DESCENDING)], name="orders_created")
        await self.deliveries.create_index(
            [("order_id", ASCENDING)], name="deliveries_order", unique=True
        )
        await self.outbox.create_index(
            [("published_at", ASCENDING), ("created_at", ASCENDING)], name="outbox_pending"
        )
        await self.menu.create_index([("position", ASCENDING)], name="menu_position")

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
        return [_menu_item(doc) for doc in docs]

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

        async def replay(session: AsyncClientSession | None) -> PlaceOrderResult | None:
            if idempotency_key is None:
                return None
            doc = await self.orders.find_one({"idempotency_key": idempotency_key}, session=session)
            if doc is None:
                return None
            if doc.get("request_hash") != request_hash:
                raise IdempotencyKeyReused(idempotency_key)
            delivery = await self.deliveries.find_one({"order_id": doc["_id"]}, session=session)
            return PlaceOrderResult(order=_order(doc, delivery), outbox=[], replayed=True)

        async def callback(session: AsyncClientSession) -> PlaceOrderResult:
            replayed = await replay(session)
            if replayed is not None:
                return replayed
            items = {
                doc["_id"]: doc
                for doc in await self.menu.find(
                    {"_id": {"$in": list(wanted)}}, session=session
                ).to_list()
            }
            check_stock(wanted, items)
            for item_id, quantity in wanted.items():
                result = await self.menu.update_one(
                    {"_id": item_id, "stock": {"$gte": quantity}},
                    {"$inc": {"stock": -quantity}},
                    session=session,
                )
                if result.modified_count != 1:
                    raise out_of_stock(item_id, items[item_id], quantity)

            order = new_order(requested, items, simulate=simulate, customer=customer)
            now = order.created_at
            doc: Doc = {
                "_id": order.id,
                "lines": [line.model_dump() for line in order.lines],
                "total": order.total,
                "status": order.status,
                "status_rank": order_status_rank(order.status),
                "history": [change.model_dump() for change in order.history],
                "created_at": now,
                "updated_at": now,
                "simulate": order.simulate,
            }
            if customer is not None:
                doc["customer"] = customer.model_dump()
            if idempotency_key is not None:
                doc["idempotency_key"] = idempotency_key
                doc["request_hash"] = request_hash
            await self.orders.insert_one(doc, session=session)
            outbox = list(events(order))
            await self._insert_outbox(outbox, session)
            return PlaceOrderResult(order=order, outbox=outbox, replayed=False)

        try:
            return await self._transaction(callback)
        except DuplicateKeyError:
            # A concurrent request with the same Idempotency-Key committed first.
            replayed = await replay(None)
            if replayed is None:
                raise
            return replayed

    async def get_order(self, order_id: str) -> Order | None:
        doc = await self.orders.find_one({"_id": order_id})
        if doc is None:
            return None
        delivery = await self.deliveries.find_one({"order_id": order_id})
        return _order(doc, delivery)

    async def recent_orders(self, limit: int) -> list[Order]:
        check_recent_limit(limit)
        newest = [("created_at", DESCENDING), ("_id", DESCENDING)]
        docs = await self.orders.find({}, sort=newest, limit=limit).to_list()
        ids = [doc["_id"] for doc in docs]
        deliveries = {
            delivery["order_id"]: delivery
            for delivery in await self.deliveries.find({"order_id": {"$in": ids}}).to_list()
        }
        return [_order(doc, deliveries.get(doc["_id"])) for doc in docs]

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = lifecycle_rank(status)

        async def callback(session: AsyncClientSession) -> StatusChange:
            before = await self.orders.find_one_and_update(
                {"_id": order_id, "status_rank": {"$lt": rank}},
                _status_update(status, rank, at),
                projection={"status": 1, "simulate": 1},
                session=session,
            )
            if before is None:
                current = await self.orders.find_one(
                    {"_id": order_id}, projection={"status": 1}, session=session
                )
                if current is None:
                    raise OrderNotFound(order_id)
                return StatusChange(changed=False, cancelled=current["status"] == CANCELLED)
            transition = StatusTransition(
                entity_id=order_id,
                order_id=order_id,
                previous=before["status"],
                status=status,
                at=at,
                simulate=before.get("simulate", True),
            )
            outbox = list(events(transition))
            await self._insert_outbox(outbox, session)
            return StatusChange(changed=True, outbox=outbox)

        return await self._transaction(callback)

    async def cancel_order(
        self, order_id: str, events: CancelEvents = no_cancel_events
    ) -> CancelResult:
        async def callback(session: AsyncClientSession) -> CancelResult:
            doc, cancelled, outbox = await cancel_order_doc(
                self.orders, self.menu, order_id, events, session
            )
            await self._insert_outbox(outbox, session)
            delivery = await self.deliveries.find_one({"order_id": order_id}, session=session)
            return CancelResult(order=_order(doc, delivery), cancelled=cancelled, outbox=outbox)

        return await self._transaction(callback)

    async def count_orders(self, item_id: str | None = None) -> int:
        query: Doc = {} if item_id is None else {"lines.item_id": item_id}
        return await self.orders.count_documents(query)

    # ------------------------------------------------------------ deliveries

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        async def callback(session: AsyncClientSession) -> DeliveryResult:
            order = await self.orders.find_one(
                {"_id": order_id}, projection={"customer": 1}, session=session
            )
            if order is None:
                raise OrderNotFound(order_id)
            recipient = _customer(order)
            existing = await self.deliveries.find_one({"order_id": order_id}, session=session)
            if existing is not None:
                return DeliveryResult(_delivery(existing), created=False, recipient=recipient)
            delivery = new_delivery(order_id)
            now = delivery.created_at
            await self.deliveries.insert_one(
                {
                    "_id": delivery.id,
                    "order_id": order_id,
                    "status": delivery.status,
                    "status_rank": delivery_status_rank(delivery.status),
                    "history": [change.model_dump() for change in delivery.history],
                    "created_at": now,
                    "updated_at": now,
                },
                session=session,
            )
            outbox = list(events(delivery))
            await self._insert_outbox(outbox, session)
            return DeliveryResult(delivery, created=True, outbox=outbox, recipient=recipient)

        try:
            return await self._transaction(callback)
        except DuplicateKeyError:
            # Another worker created this order's delivery concurrently.
            doc = await self.deliveries.find_one({"order_id": order_id})
            order = await self.orders.find_one({"_id": order_id}, projection={"customer": 1})
            if doc is None or order is None:
                raise
            return DeliveryResult(_delivery(doc), created=False, recipient=_customer(order))

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        rank = delivery_status_rank(status)

        async def callback(session: AsyncClientSession) -> StatusChange:
            before = await self.deliveries.find_one_and_update(
                {"_id": delivery_id, "status_rank": {"$lt": rank}},
                _status_update(status, rank, at),
                projection={"status": 1, "order_id": 1},
                session=session,
            )
            if before is None:
                if await self.deliveries.count_documents({"_id": delivery_id}, session=session):
                    return StatusChange(changed=False)
                raise DeliveryNotFound(delivery_id)
            order = await self.orders.find_one(
                {"_id": before["order_id"]}, projection={"simulate": 1}, session=session
            )
            transition = StatusTransition(
                entity_id=delivery_id,
                order_id=before["order_id"],
                previous=before["status"],
                status=status,
                at=at,
                simulate=True if order is None else order.get("simulate", True),
            )
            outbox = list(events(transition))
            await self._insert_outbox(outbox, session)
            return StatusChange(changed=True, outbox=outbox)

        return await self._transaction(callback)

    # ---------------------------------------------------------------- outbox

    async def _insert_outbox(
        self, messages: Sequence[OutboxMessage], session: AsyncClientSession
    ) -> None:
        if not messages:
            return
        now = time.time()
        await self.outbox.insert_many(
            [
                {
                    "_id": message.id,
                    "stream": message.stream,
                    "envelope": message.to_json(),
                    "created_at": now,
                    "seq": n,
                    "published_at": None,
                }
                for n, message in enumerate(messages)
            ],
            ordered=True,
            session=session,
        )

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        cursor = (
            self.outbox.find(
                {"published_at": None, "created_at": {"$lte": time.time() - min_age_seconds}}
            )
            .sort([("created_at", 1), ("seq", 1)])
            .limit(limit)
        )
        return [
            OutboxMessage.from_json(
                id=doc["_id"], stream=doc["stream"], envelope_json=doc["envelope"]
            )
            for doc in await cursor.to_list()
        ]

    async def mark_published(self, outbox_ids: Sequence[str]) -> None:
        ids = list(outbox_ids)
        if not ids:
            return
        await self.outbox.update_many(
            {"_id": {"$in": ids}, "published_at": None}, {"$set": {"published_at": time.time()}}
        )

    async def prune_outbox(self, published_before_seconds: float) -> int:
        if published_before_seconds < 0:
            raise ValueError("published_before_seconds cannot be negative")
        cutoff = time.time() - published_before_seconds
        # Pending rows hold ``published_at: None``; ``$lt`` on a number never matches
        # null (nor a missing field), ``$ne`` says so explicitly. The outbox_pending
        # index leads with published_at, so this is a range scan, not a collection scan.
        # No transaction: each delete is atomic and a partial run is just a smaller prune.
        result = await self.outbox.delete_many({"published_at": {"$ne": None, "$lt": cutoff}})
        return result.deleted_count

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract
        """Polling fallback: a change stream could wake the relay, but without a server
        to run it against here it is not written; sleep, and let the relay poll."""
        await asyncio.sleep(timeout)
        return False


# ------------------------------------------------------------------ mapping


def _status_update(status: str, rank: int, at: str) -> Doc:
    """Set the new status (and its rank) and append it to ``history``."""
    return {
        "$set": {"status": status, "status_rank": rank, "updated_at": utc_now()},
        "$push": {"history": {"status": status, "at": at}},
    }


def _menu_item(doc: Doc) -> MenuItem:
    return MenuItem(
        id=doc["_id"],
        name=doc["name"],
        description=doc["description"],
        category=doc["category"],
        price=int(doc["price"]),
        stock=int(doc["stock"]),
    )


def _delivery(doc: Doc) -> Delivery:
    return Delivery(
        id=doc["_id"],
        order_id=doc["order_id"],
        status=doc["status"],
        history=[DeliveryStatusChange(status=h["status"], at=h["at"]) for h in doc["history"]],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def _order(doc: Doc, delivery: Doc | None) -> Order:
    return Order(
        id=doc["_id"],
        lines=[
            OrderLine(
                item_id=line["item_id"],
                name=line["name"],
                quantity=int(line["quantity"]),
                unit_price=int(line["unit_price"]),
            )
            for line in doc["lines"]
        ],
        total=int(doc["total"]),
        status=doc["status"],
        history=[OrderStatusChange(status=h["status"], at=h["at"]) for h in doc["history"]],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        delivery=None if delivery is None else _delivery(delivery),
        simulate=doc.get("simulate", True),  # documents from before the flag: simulated
        customer=_customer(doc),
    )


def _customer(doc: Doc) -> Customer | None:
    """The order's delivery details; ``None`` when placed without them (or before them)."""
    found = doc.get("customer")
    if found is None:
        return None
    return Customer(name=found["name"], address=found["address"], phone=found["phone"])
