"""The orders service: order placement, persisted status changes, the outbox relay.

* :func:`place_order` is the use case behind ``POST /api/v1/orders``: one store
  transaction reserves the stock, inserts the order and writes
  ``order.created.v1`` (orders-stream) and ``order.simulate.v1{confirmed}``
  (simulate-order-stream) to the outbox; right after the commit the messages are
  published. If that publish fails (Redis down, process killed) the relay
  publishes them later: no event is lost between commit and publish.
* The agent on order-status-stream (orders-group) applies each reported status
  monotonically and, in the same store transaction, writes
  ``order.status_updated.v1`` to the outbox, then publishes it.
* A timer relays outbox messages that stayed unpublished for a few seconds,
  and (at most once a minute) deletes the rows published longer ago than
  ``ORDERFLOW_OUTBOX_RETENTION_SECONDS``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from functools import partial
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orderflow.agents.outbox import (
    Cause,
    MessageRecorder,
    outbox_message,
    publish_outbox,
    relay_once,
)
from orderflow.agents.outbox_retention import OutboxPruner
from orderflow.agents.settings import get_settings
from orderflow.agents.store_provider import attach_store
from orderflow.agents.topics import (
    ORDER_STATUS_STREAM,
    ORDERS_GROUP,
    ORDERS_STREAM,
    SIMULATE_ORDER_STREAM,
    declare_topic,
)
from orderflow.models.documents import Order, OrderLineRequest, OrderStatus
from orderflow.models.events import (
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
)
from orderflow.models.store import OutboxMessage, PlaceOrderResult, StatusTransition, Store
from orderflow.runtime import App, Stream
from orderflow.runtime.context import current_correlation_id

log = logging.getLogger(__name__)

SOURCE = "orders"


def order_created_messages(order: Order, correlation_id: str) -> list[OutboxMessage]:
    """The outbox of a new order: announce it, and start its simulated lifecycle."""
    created = outbox_message(
        ORDERS_STREAM,
        OrderCreated(
            order_id=order.id, lines=order.lines, total=order.total, created_at=order.created_at
        ),
        source=SOURCE,
        key=order.id,
        correlation_id=correlation_id,
    )
    simulate = outbox_message(
        SIMULATE_ORDER_STREAM,
        OrderSimulate(order_id=order.id, status="confirmed"),
        source=SOURCE,
        key=order.id,
        correlation_id=correlation_id,
        causation_id=created.envelope.event_id,
    )
    return [created, simulate]


async def place_order(
    store: Store,
    redis: aioredis.Redis,
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
            await publish_outbox(redis, store, result.outbox)
        except (RedisError, OSError) as exc:
            log.warning(
                "order %s committed but not published (%s); the outbox relay will publish it",
                result.order.id,
                exc,
            )
    return result


def order_status_messages(transition: StatusTransition, cause: Cause) -> list[OutboxMessage]:
    """``order.status_updated.v1``, built inside the store transaction (it knows ``previous``)."""
    update = OrderStatusUpdated(
        order_id=transition.order_id,
        status=cast(OrderStatus, transition.status),
        at=transition.at,
        previous=cast(OrderStatus, transition.previous),
    )
    return [
        outbox_message(
            ORDERS_STREAM,
            update,
            source=SOURCE,
            key=transition.order_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
        )
    ]


def create_orders_app(
    *,
    broker: str | None = None,
    store: Store | None = None,
    relay_interval: float | None = None,
    relay_min_age: float | None = None,
    outbox_retention: float | None = None,
) -> App:
    """Build the orders app; ``store`` (owned by the caller) overrides the settings' URL.

    ``relay_interval``, ``relay_min_age`` and ``outbox_retention`` (seconds)
    default to the ``outbox_*`` settings.
    """
    if relay_interval is None:
        relay_interval = get_settings().outbox_relay_interval_seconds
    if relay_min_age is None:
        relay_min_age = get_settings().outbox_relay_min_age_seconds
    if outbox_retention is None:
        outbox_retention = get_settings().outbox_retention_seconds
    pruner = OutboxPruner(outbox_retention)
    app = App("orders", broker=broker, settings=get_settings())
    stores = attach_store(app, store)
    order_status = declare_topic(app, ORDER_STATUS_STREAM, OrderStatusReported)

    @app.agent(order_status, group=ORDERS_GROUP)
    async def persist_order_status(stream: Stream[OrderStatusReported]) -> None:
        async for event in stream.events():
            report = event.value
            current = await stores.get()
            recorder = MessageRecorder(partial(order_status_messages, cause=event))
            changed = await current.update_order_status(
                report.order_id, report.status, report.at, recorder
            )
            if changed:
                await publish_outbox(app.redis, current, recorder.messages)
                log.info("order %s is now %s", report.order_id, report.status)
            else:
                log.info("order %s: status %s is stale or repeated", report.order_id, report.status)

    @app.timer(relay_interval)
    async def relay_outbox() -> None:
        current = await stores.get()
        try:
            relayed = await relay_once(app.redis, current, relay_min_age)
        except (RedisError, OSError) as exc:
            log.warning("outbox relay: %s; retrying in %.1fs", exc, relay_interval)
        else:
            if relayed:
                log.info("outbox relay: published %d message(s) left behind", relayed)
        # Store-only work, so it goes on while Redis is down; a no-op most ticks.
        await pruner.maybe_prune(current)

    return app


app = create_orders_app()
