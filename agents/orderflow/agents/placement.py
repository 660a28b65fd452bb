"""Placing an order: the use case behind ``POST /api/v1/orders``.

One store transaction reserves the stock, inserts the order and writes
``order.created.v1`` (orders-stream) and, unless the order is placed with
``simulate=False``, ``order.simulate.v1{confirmed}`` (simulate-order-stream) to
the outbox; right after the commit the messages are published through
``publisher`` (the API process's runtime ``App``). If that publish fails (Redis
down, process killed) the relay in the orders worker publishes them later: no
event is lost between commit and publish. With ``publish_after`` (the API's) the
publish is handed to it instead of awaited, so the caller answers as soon as the order
is committed (:mod:`orderflow.web.after_answer`).

``customer`` (name, address, phone) is stored with the order and nowhere else: the
events are built from explicit fields that exclude it, and the log line names the
order by id only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from orderflow.agents.messages import order_created_messages
from orderflow.agents.outbox import publish_committed
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.models.documents import Customer, OrderLineRequest
from orderflow.models.store import PlaceOrderResult, Store
from orderflow.models.store.deadline import within
from orderflow.runtime import App
from orderflow.runtime.context import current_correlation_id

log = logging.getLogger(__name__)

PublishAfter = Callable[[Coroutine[Any, Any, None]], None]
"""Takes the publish of a committed order's outbox, to run it after the answer."""


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
    publish_after: PublishAfter | None = None,
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
    without it they are marked before this returns. ``publish_after`` takes the
    publish (a coroutine, already within the deadline's context) instead of awaiting it.
    """
    if deadline is None:
        return await _place_and_publish(
            store, publisher, lines, idempotency_key, request_hash, simulate, customer, marks,
            publish_after,
        )  # fmt: skip
    with within(deadline):
        return await _place_and_publish(
            store, publisher, lines, idempotency_key, request_hash, simulate, customer, marks,
            publish_after,
        )  # fmt: skip


async def _place_and_publish(
    store: Store,
    publisher: App,
    lines: Sequence[OrderLineRequest],
    idempotency_key: str | None,
    request_hash: str | None,
    simulate: bool,
    customer: Customer | None,
    marks: PublishedMarks | None,
    publish_after: PublishAfter | None,
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
    if not result.outbox:  # nothing to publish (a replay: published with the first answer)
        return result
    publish = publish_committed(
        publisher, store, result.outbox, what=f"order {result.order.id}", marks=marks
    )
    if publish_after is None:
        await publish
    else:
        publish_after(publish)
    return result
