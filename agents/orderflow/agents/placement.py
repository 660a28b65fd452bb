"""Placing an order: the use case behind ``POST /api/v1/orders``.

One store transaction reserves the stock, inserts the order and writes
``order.created.v1`` (orders-stream) and, unless the order is placed with
``simulate=False``, ``order.simulate.v1{confirmed}`` (simulate-order-stream) to
the outbox; right after the commit the messages are published through
``publisher`` (the API process's runtime ``App``). If that publish fails (Redis
down, process killed) the relay in the orders worker publishes them later: no
event is lost between commit and publish.

``customer`` (name, address, phone) is stored with the order and nowhere else: the
events are built from explicit fields that exclude it, and the log line names the
order by id only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from orderflow.agents.messages import order_created_messages
from orderflow.agents.outbox import publish_committed
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.models.documents import Customer, OrderLineRequest
from orderflow.models.store import PlaceOrderResult, Store
from orderflow.models.store.deadline import within
from orderflow.runtime import App
from orderflow.runtime.context import current_correlation_id

log = logging.getLogger(__name__)


async def place_order(
    store: Store,
    publisher: App,
    lines: Sequence[OrderLineRequest],
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    deadline: float | None = None,
    simulate: bool = True,
    customer: Customer | None = None,
    marks: PublishedMarks | None = None,
) -> PlaceOrderResult:
    """Place an order (one transaction with its outbox), then publish the outbox at once.

    ``simulate=False`` stores an order the simulator leaves at ``created`` (an
    operator moves it on: :mod:`orderflow.web.ops.lifecycle`). Raises the store's
    ``UnknownItem``, ``OutOfStock`` and ``IdempotencyKeyReused``,
    and ``StoreUnavailable`` (``DeadlineExceeded``) when the store did not finish
    within ``deadline`` seconds -- the transaction was then abandoned and nothing
    was committed. The publish gets what is left of the same deadline: a publish
    that fails or runs out of time -- Redis, or the store marking the rows
    published -- is logged, not raised, because the order exists and the relay in
    the orders worker will publish its events. ``marks`` (the API process's) defers
    the rows' "published" mark off the request (:mod:`orderflow.agents.publish_marks`);
    without it they are marked before this returns.
    """
    if deadline is None:
        return await _place_and_publish(
            store, publisher, lines, idempotency_key, request_hash, simulate, customer, marks
        )
    with within(deadline):
        return await _place_and_publish(
            store, publisher, lines, idempotency_key, request_hash, simulate, customer, marks
        )


async def _place_and_publish(
    store: Store,
    publisher: App,
    lines: Sequence[OrderLineRequest],
    idempotency_key: str | None,
    request_hash: str | None,
    simulate: bool,
    customer: Customer | None,
    marks: PublishedMarks | None,
) -> PlaceOrderResult:
    correlation_id = current_correlation_id() or uuid.uuid4().hex
    result = await store.place_order(
        lines,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        events=lambda order: order_created_messages(order, correlation_id),
        simulate=simulate,
        customer=customer,
    )
    if not result.replayed:
        log.info(
            "order %s placed: %d line(s), total %d",
            result.order.id,
            len(result.order.lines),
            result.order.total,
        )
    await publish_committed(
        publisher, store, result.outbox, what=f"order {result.order.id}", marks=marks
    )
    return result
