"""Placing an order: the use case behind ``POST /api/v1/orders``.

One store transaction reserves the stock, inserts the order and writes
``order.created.v1`` (orders-stream) and ``order.simulate.v1{confirmed}``
(simulate-order-stream) to the outbox; right after the commit the messages are
published through ``publisher`` (the API process's runtime ``App``). If that publish
fails (Redis down, process killed) the relay in the orders worker publishes them
later: no event is lost between commit and publish.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from redis.exceptions import RedisError

from orderflow.agents.messages import order_created_messages
from orderflow.agents.outbox import publish_outbox
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import PlaceOrderResult, Store
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
) -> PlaceOrderResult:
    """Place an order (one transaction with its outbox), then publish the outbox at once.

    Raises the store's ``UnknownItem``, ``OutOfStock`` and ``IdempotencyKeyReused``.
    A failed publish is logged, not raised: the order exists, and the relay in
    the orders worker will publish its events.
    """
    correlation_id = current_correlation_id() or uuid.uuid4().hex
    result = await store.place_order(
        lines,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        events=lambda order: order_created_messages(order, correlation_id),
    )
    if not result.replayed:
        log.info(
            "order %s placed: %d line(s), total %d",
            result.order.id,
            len(result.order.lines),
            result.order.total,
        )
    if result.outbox:
        try:
            await publish_outbox(publisher, store, result.outbox)
        except (RedisError, OSError) as exc:
            log.warning(
                "order %s committed but not published (%s); the outbox relay will publish it",
                result.order.id,
                exc,
            )
    return result
