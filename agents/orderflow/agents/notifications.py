"""The notifications service: the latest status of every order, cached in Redis.

It reads orders-stream and deliveries-stream (notifications-group) and merges
each status into ``orderflow:status:<order_id>`` (see :mod:`orderflow.agents.status_cache`)
with a TTL of ``ORDERFLOW_STATUS_TTL_SECONDS`` (24 h). The WebSocket gateway
sends that document as a socket's first message.

A redelivered event has no second effect because the merge itself is idempotent: it
only moves an order (or its delivery) forward in its lifecycle, so applying the same
status again changes nothing. That is why the merge runs on its own (one script on
the order's key) and not in one MULTI with the event's "processed" mark
(``event.atomic()``): under Redis Cluster the status key and the mark, which carries
the stream's hash tag, live in different slots, and one MULTI over both fails with
``CROSSSLOT``. The event is acked and marked after the merge, as any other.
"""

from __future__ import annotations

from orderflow.agents.settings import get_settings
from orderflow.agents.status_cache import merge_delivery_status, merge_order_status
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    NOTIFICATIONS_GROUP,
    ORDERS_STREAM,
    declare_topic,
)
from orderflow.models.events import (
    DeliveryCreated,
    DeliveryStatusUpdated,
    OrderCancelled,
    OrderCreated,
    OrderStatusUpdated,
)
from orderflow.runtime import App, Stream


def create_notifications_app(*, broker: str | None = None, ttl_seconds: int | None = None) -> App:
    """Build the notifications app; ``ttl_seconds`` overrides the settings."""
    app = App("notifications", broker=broker, settings=get_settings())
    orders = declare_topic(app, ORDERS_STREAM, (OrderCreated, OrderStatusUpdated, OrderCancelled))
    deliveries = declare_topic(app, DELIVERIES_STREAM, (DeliveryCreated, DeliveryStatusUpdated))

    def ttl() -> int:
        return ttl_seconds if ttl_seconds is not None else get_settings().status_ttl_seconds

    @app.agent(orders, group=NOTIFICATIONS_GROUP)
    async def cache_order_status(
        stream: Stream[OrderCreated | OrderStatusUpdated | OrderCancelled],
    ) -> None:
        async for event in stream.events():
            value = event.value
            at = value.created_at if isinstance(value, OrderCreated) else value.at
            pipe = app.redis.pipeline(transaction=False)
            merge_order_status(
                pipe, order_id=value.order_id, status=value.status, at=at, ttl_seconds=ttl()
            )
            await pipe.execute()

    @app.agent(deliveries, group=NOTIFICATIONS_GROUP)
    async def cache_delivery_status(
        stream: Stream[DeliveryCreated | DeliveryStatusUpdated],
    ) -> None:
        async for event in stream.events():
            value = event.value
            at = value.created_at if isinstance(value, DeliveryCreated) else value.at
            pipe = app.redis.pipeline(transaction=False)
            merge_delivery_status(
                pipe,
                order_id=value.order_id,
                delivery_id=value.delivery_id,
                status=value.status,
                at=at,
                ttl_seconds=ttl(),
            )
            await pipe.execute()

    return app


app = create_notifications_app()
