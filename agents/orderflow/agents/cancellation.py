"""Cancelling an order: the use case behind ``POST /api/v1/orders/<id>/cancel``, and the
count of what a cancel stops.

One store transaction (``Store.cancel_order``) checks the status under its lock, sets
``cancelled``, gives the stock back and writes ``order.cancelled.v1`` (orders-stream)
and ``stock.changed.v1`` (menu-stream) to the outbox; right after the commit the
messages are published through ``publisher``, and if that fails the orders worker's
relay publishes them later, as for a placed order.

What stops the simulated lifecycle: nothing is sent to the simulator. It is stateless
and only ever reacts to an ``order.status_updated.v1``, which a cancelled order never
gets again; a report it had already scheduled (the ``confirmed`` or ``preparing`` of an
order cancelled meanwhile) reaches the orders worker, where the store drops it
(``StatusChange.cancelled``) and :data:`DROPPED_AFTER_CANCEL` counts it. No delivery
is ever created: the delivery service creates one only on ``out_for_delivery``, which
the store never applies to a cancelled order.
"""

from __future__ import annotations

import logging
import uuid

from prometheus_client import Counter

from orderflow.agents.messages import order_cancelled_messages
from orderflow.agents.outbox import publish_committed
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.models.documents import ORDER_STATUSES
from orderflow.models.store import CancelResult, Store
from orderflow.models.store.deadline import within
from orderflow.runtime import App
from orderflow.runtime.context import current_correlation_id

log = logging.getLogger(__name__)

DROPPED_AFTER_CANCEL = Counter(
    "orderflow_status_dropped_after_cancel",
    "Status reports for an order that was already cancelled (dropped, never applied)",
    ["reported"],
)
"""Labelled by the status reported (not ``status``: on ``/metrics`` that label means an
HTTP status): only the four reportable ones, a fixed set."""
for _status in ORDER_STATUSES[1:]:
    DROPPED_AFTER_CANCEL.labels(reported=_status)  # every series exists from the start


def count_dropped(status: str) -> None:
    """Count a status the store dropped because the order is cancelled."""
    if status in ORDER_STATUSES[1:]:
        DROPPED_AFTER_CANCEL.labels(reported=status).inc()


async def cancel_order(
    store: Store,
    publisher: App,
    order_id: str,
    *,
    deadline: float | None = None,
    marks: PublishedMarks | None = None,
) -> CancelResult:
    """Cancel ``order_id`` (one transaction with its outbox), then publish the outbox.

    Raises the store's ``OrderNotFound`` and ``NotCancellable`` (nothing changed), and
    ``StoreUnavailable`` when the store did not finish within ``deadline`` seconds (the
    transaction was abandoned). A failed publish is logged, not raised: the cancel is
    committed and the relay publishes its events. ``marks`` defers the rows' "published"
    mark, as for a placed order.
    """
    if deadline is None:
        return await _cancel_and_publish(store, publisher, order_id, marks)
    with within(deadline):
        return await _cancel_and_publish(store, publisher, order_id, marks)


async def _cancel_and_publish(
    store: Store, publisher: App, order_id: str, marks: PublishedMarks | None
) -> CancelResult:
    correlation_id = current_correlation_id() or uuid.uuid4().hex
    result = await store.cancel_order(
        order_id, lambda cancellation: order_cancelled_messages(cancellation, correlation_id)
    )
    if result.cancelled:
        log.info("order %s cancelled, stock returned", order_id)
    await publish_committed(
        publisher, store, result.outbox, what=f"cancel of order {order_id}", marks=marks
    )
    return result
