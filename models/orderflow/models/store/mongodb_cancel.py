"""The MongoDB store's cancel transaction (the contract:
:mod:`orderflow.models.store.cancellation`).

Runs as the callback of the store's ``with_transaction``. The race with a status
update is decided by a conditional update on the order document: the cancel sets
``cancelled`` only where ``status_rank`` is still a cancellable one, and a status
update sets its status only where ``status_rank`` is below it (``cancelled`` outranks
every status). Two transactions writing the same document conflict, the driver
re-runs the loser's callback, and that one then reads the winner's status: a cancel
refuses (``NotCancellable``), an update finds nothing to change.

No MongoDB runs in this project's CI; the contract suite covers this module when
``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from orderflow.models.documents import CANCELLED, utc_now
from orderflow.models.store.cancellation import (
    CANCELLED_RANK,
    LAST_CANCELLABLE_RANK,
    CancelEvents,
    Cancellation,
    must_cancel,
    returned_quantities,
)
from orderflow.models.store.errors import OrderNotFound
from orderflow.models.store.outbox import OutboxMessage

Doc = dict[str, Any]


async def cancel_order_doc(
    orders: AsyncCollection[Doc],
    menu: AsyncCollection[Doc],
    order_id: str,
    events: CancelEvents,
    session: AsyncClientSession,
) -> tuple[Doc, bool, list[OutboxMessage]]:
    """-> (the order document after the call, cancelled now?, outbox messages to insert).

    Raises ``OrderNotFound`` or ``NotCancellable``; the caller inserts the messages in
    the same transaction and builds the ``CancelResult``."""
    at = utc_now()
    before = await orders.find_one_and_update(
        {"_id": order_id, "status_rank": {"$lte": LAST_CANCELLABLE_RANK}},
        {
            "$set": {"status": CANCELLED, "status_rank": CANCELLED_RANK, "updated_at": utc_now()},
            "$push": {"history": {"status": CANCELLED, "at": at}},
        },
        return_document=ReturnDocument.BEFORE,
        session=session,
    )
    if before is None:
        current = await orders.find_one({"_id": order_id}, session=session)
        if current is None:
            raise OrderNotFound(order_id)
        must_cancel(order_id, current["status"])  # raises unless it is already cancelled
        return current, False, []
    returned = returned_quantities(
        [(line["item_id"], int(line["quantity"])) for line in before["lines"]]
    )
    for item_id, quantity in returned.items():
        await menu.update_one({"_id": item_id}, {"$inc": {"stock": quantity}}, session=session)
    cancellation = Cancellation(
        order_id=order_id,
        previous=before["status"],
        at=at,
        returned=returned,
        simulate=before.get("simulate", True),
    )
    after = await orders.find_one({"_id": order_id}, session=session)
    assert after is not None
    return after, True, list(events(cancellation))
