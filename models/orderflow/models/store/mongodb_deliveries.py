"""The MongoDB store's deliveries: creating an order's one delivery and moving its status
forward -- the bodies of the store's transactions.

Like :mod:`orderflow.models.store.mongodb_orders`, each ``*_in`` function runs as
the callback of the store's ``with_transaction`` and may be run again by the driver
after a write conflict. The unique index ``deliveries_order`` decides the race of
two workers creating the delivery of one order: the loser's commit fails with
``DuplicateKeyError`` and the store answers with the winner's delivery
(:func:`existing_delivery`).

No MongoDB runs in this project's CI; the contract suite covers this module when
``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

from pymongo.asynchronous.client_session import AsyncClientSession

from orderflow.models.documents import delivery_status_rank
from orderflow.models.store import (
    DeliveryEvents,
    DeliveryResult,
    StatusChange,
    StatusTransition,
    TransitionEvents,
    new_delivery,
)
from orderflow.models.store.errors import DeliveryNotFound, OrderNotFound
from orderflow.models.store.mongodb_mapping import customer_from, delivery_from, status_update
from orderflow.models.store.mongodb_outbox import insert_outbox
from orderflow.models.store.mongodb_schema import Collections


async def create_delivery_in(
    c: Collections, session: AsyncClientSession, order_id: str, events: DeliveryEvents
) -> DeliveryResult:
    """The order's delivery: the existing one, or a new one with its outbox rows."""
    order = await c.orders.find_one({"_id": order_id}, projection={"customer": 1}, session=session)
    if order is None:
        raise OrderNotFound(order_id)
    recipient = customer_from(order)
    existing = await c.deliveries.find_one({"order_id": order_id}, session=session)
    if existing is not None:
        return DeliveryResult(delivery_from(existing), created=False, recipient=recipient)
    delivery = new_delivery(order_id)
    now = delivery.created_at
    await c.deliveries.insert_one(
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
    await insert_outbox(c.outbox, outbox, session)
    return DeliveryResult(delivery, created=True, outbox=outbox, recipient=recipient)


async def existing_delivery(c: Collections, order_id: str) -> DeliveryResult | None:
    """After losing the race to create it: the delivery another worker committed."""
    doc = await c.deliveries.find_one({"order_id": order_id})
    order = await c.orders.find_one({"_id": order_id}, projection={"customer": 1})
    if doc is None or order is None:
        return None
    return DeliveryResult(delivery_from(doc), created=False, recipient=customer_from(order))


async def update_delivery_status_in(
    c: Collections,
    session: AsyncClientSession,
    delivery_id: str,
    status: str,
    rank: int,
    at: str,
    events: TransitionEvents,
) -> StatusChange:
    """Move the delivery to ``status`` only if it ranks above the current one."""
    before = await c.deliveries.find_one_and_update(
        {"_id": delivery_id, "status_rank": {"$lt": rank}},
        status_update(status, rank, at),
        projection={"status": 1, "order_id": 1},
        session=session,
    )
    if before is None:
        if await c.deliveries.count_documents({"_id": delivery_id}, session=session):
            return StatusChange(changed=False)
        raise DeliveryNotFound(delivery_id)
    order = await c.orders.find_one(
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
    await insert_outbox(c.outbox, outbox, session)
    return StatusChange(changed=True, outbox=outbox)
