"""The MongoDB store's orders: placing one, replaying it, reading, moving its status
forward and cancelling it -- the bodies of the store's transactions.

Each ``*_in`` function runs as the callback of the store's ``with_transaction``
(:meth:`orderflow.models.store.mongodb.MongoStore._transaction`) with its
``session``: it only computes and writes, because the driver may run it again
after a write conflict (e.g. two buyers of the last item). Domain errors
(``OutOfStock``, ``OrderNotFound``, ``IdempotencyKeyReused``) abort the
transaction and propagate unchanged. Stock is decremented with the conditional
update ``{_id, stock: {$gte: q}}``, so a buyer never takes what another took.

No MongoDB runs in this project's CI; the contract suite covers this module when
``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from orderflow.models.documents import (
    CANCELLED,
    Customer,
    Order,
    OrderLineRequest,
    order_status_rank,
)
from orderflow.models.store import (
    CancelEvents,
    CancelResult,
    OrderEvents,
    PlaceOrderResult,
    StatusChange,
    StatusTransition,
    TransitionEvents,
    check_recent_limit,
    check_stock,
    new_order,
    out_of_stock,
)
from orderflow.models.store.errors import IdempotencyKeyReused, OrderNotFound
from orderflow.models.store.mongodb_cancel import cancel_order_doc
from orderflow.models.store.mongodb_mapping import order_from, status_update
from orderflow.models.store.mongodb_outbox import insert_outbox
from orderflow.models.store.mongodb_schema import Collections, Doc


async def replay_order(
    c: Collections,
    idempotency_key: str | None,
    request_hash: str | None,
    session: AsyncClientSession | None,
) -> PlaceOrderResult | None:
    """The order already placed with ``idempotency_key``, or ``None``; the same key with
    another request is ``IdempotencyKeyReused``. ``session`` is ``None`` after a
    transaction lost the race for the key (the winner has committed)."""
    if idempotency_key is None:
        return None
    doc = await c.orders.find_one({"idempotency_key": idempotency_key}, session=session)
    if doc is None:
        return None
    if doc.get("request_hash") != request_hash:
        raise IdempotencyKeyReused(idempotency_key)
    delivery = await c.deliveries.find_one({"order_id": doc["_id"]}, session=session)
    return PlaceOrderResult(order=order_from(doc, delivery), outbox=[], replayed=True)


async def place_order_in(
    c: Collections,
    session: AsyncClientSession,
    requested: Sequence[OrderLineRequest],
    wanted: dict[str, int],
    *,
    idempotency_key: str | None,
    request_hash: str | None,
    events: OrderEvents,
    simulate: bool,
    customer: Customer | None,
) -> PlaceOrderResult:
    """Replay, or take the stock, insert the order and its outbox rows."""
    replayed = await replay_order(c, idempotency_key, request_hash, session)
    if replayed is not None:
        return replayed
    items = {
        doc["_id"]: doc
        for doc in await c.menu.find({"_id": {"$in": list(wanted)}}, session=session).to_list()
    }
    check_stock(wanted, items)
    for item_id, quantity in wanted.items():
        result = await c.menu.update_one(
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
    await c.orders.insert_one(doc, session=session)
    outbox = list(events(order))
    await insert_outbox(c.outbox, outbox, session)
    return PlaceOrderResult(order=order, outbox=outbox, replayed=False)


async def get_order(c: Collections, order_id: str) -> Order | None:
    doc = await c.orders.find_one({"_id": order_id})
    if doc is None:
        return None
    delivery = await c.deliveries.find_one({"order_id": order_id})
    return order_from(doc, delivery)


async def recent_orders(c: Collections, limit: int) -> list[Order]:
    check_recent_limit(limit)
    newest = [("created_at", DESCENDING), ("_id", DESCENDING)]
    docs = await c.orders.find({}, sort=newest, limit=limit).to_list()
    ids = [doc["_id"] for doc in docs]
    deliveries = {
        delivery["order_id"]: delivery
        for delivery in await c.deliveries.find({"order_id": {"$in": ids}}).to_list()
    }
    return [order_from(doc, deliveries.get(doc["_id"])) for doc in docs]


async def update_order_status_in(
    c: Collections,
    session: AsyncClientSession,
    order_id: str,
    status: str,
    rank: int,
    at: str,
    events: TransitionEvents,
) -> StatusChange:
    """Move the order to ``status`` only if it ranks above the current one."""
    before = await c.orders.find_one_and_update(
        {"_id": order_id, "status_rank": {"$lt": rank}},
        status_update(status, rank, at),
        projection={"status": 1, "simulate": 1},
        session=session,
    )
    if before is None:
        current = await c.orders.find_one(
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
    await insert_outbox(c.outbox, outbox, session)
    return StatusChange(changed=True, outbox=outbox)


async def cancel_order_in(
    c: Collections, session: AsyncClientSession, order_id: str, events: CancelEvents
) -> CancelResult:
    doc, cancelled, outbox = await cancel_order_doc(c.orders, c.menu, order_id, events, session)
    await insert_outbox(c.outbox, outbox, session)
    delivery = await c.deliveries.find_one({"order_id": order_id}, session=session)
    return CancelResult(order=order_from(doc, delivery), cancelled=cancelled, outbox=outbox)


async def count_orders(c: Collections, item_id: str | None) -> int:
    query: Doc = {} if item_id is None else {"lines.item_id": item_id}
    return await c.orders.count_documents(query)
