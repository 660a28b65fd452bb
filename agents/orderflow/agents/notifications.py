"""The notifications service: the latest status of every order, cached in Redis.

It reads orders-stream and deliveries-stream (notifications-group) and merges
each status into ``orderflow:status:<order_id>`` (see :mod:`orderflow.agents.status_cache`)
with a TTL of ``ORDERFLOW_STATUS_TTL_SECONDS`` (24 h). The WebSocket gateway
sends that document as a socket's first message. The merge and the runtime's
"processed" mark for the event commit in one MULTI (``event.atomic()``), so a
redelivered event has no second effect.
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
    OrderCreated,
    OrderStatusUpdated,
)
from orderflow.runtime import App, Stream


def create_notifications_app(*, broker: str | None = None, ttl_seconds: int | None = None) -> App:
    """Build the notifications app; ``ttl_seconds`` overrides the settings."""
    app = App("notifications", broker=broker, settings=get_settings())
    orders = declare_topic(app, ORDERS_STREAM, (OrderCreated, OrderStatusUpdated))
    deliveries = declare_topic(app, DELIVERIES_STREAM, (DeliveryCreated, DeliveryStatusUpdated))

    def ttl() -> int:
        return ttl_seconds if ttl_seconds is not None else get_settings().status_ttl_seconds

    @app.agent(orders, group=NOTIFICATIONS_GROUP)
    async def cache_order_status(stream: Stream[OrderCreated | OrderStatusUpdated]) -> None:
        async for event in stream.events():
            value = event.value
            at = value.created_at if isinstance(value, OrderCreated) else value.at
            async with event.atomic() as pipe:
                merge_order_status(
                    pipe, order_id=value.order_id, status=value.status, at=at, ttl_seconds=ttl()
                )

    @app.agent(deliveries, group=NOTIFICATIONS_GROUP)
    async def cache_delivery_status(
        stream: Stream[DeliveryCreated | DeliveryStatusUpdated],
    ) -> None:
        async for event in stream.events():
            value = event.value
            at = value.created_at if isinstance(value, DeliveryCreated) else value.at
            async with event.atomic() as pipe:
                merge_delivery_status(
                    pipe,
                    order_id=value.order_id,
                    delivery_id=value.delivery_id,
                    status=value.status,
                    at=at,
                    ttl_seconds=ttl(),
                )

    return app


app = create_notifications_app()
