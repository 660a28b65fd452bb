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

Each agent takes the events that have already arrived together (``stream.take_events``)
and runs their merges in ONE pipelined round trip, in stream order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

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
from orderflow.runtime import App, Event, Record, Stream
from orderflow.runtime.pipeline import CommandPipeline

T = TypeVar("T", bound=Record)


async def merge_all(stream: Stream[T], events: Sequence[Event[T]], pipe: CommandPipeline) -> None:
    """Run the merges queued on ``pipe`` (one per event, in list order) in one round trip;
    a merge the server refused fails its event alone. A lost connection raises: the
    whole list is retried (a merge applied twice changes nothing)."""
    replies = await pipe.execute(raise_on_error=False)
    for event, reply in zip(events, replies, strict=True):
        if isinstance(reply, Exception):
            await stream.fail(event, reply)


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
        async for events in stream.take_events(get_settings().agent_list_max_events):
            pipe = CommandPipeline(app.redis)
            for event in events:
                value = event.value
                at = value.created_at if isinstance(value, OrderCreated) else value.at
                merge_order_status(
                    pipe, order_id=value.order_id, status=value.status, at=at, ttl_seconds=ttl()
                )
            await merge_all(stream, events, pipe)

    @app.agent(deliveries, group=NOTIFICATIONS_GROUP)
    async def cache_delivery_status(
        stream: Stream[DeliveryCreated | DeliveryStatusUpdated],
    ) -> None:
        async for events in stream.take_events(get_settings().agent_list_max_events):
            pipe = CommandPipeline(app.redis)
            for event in events:
                value = event.value
                at = value.created_at if isinstance(value, DeliveryCreated) else value.at
                merge_delivery_status(
                    pipe,
                    order_id=value.order_id,
                    delivery_id=value.delivery_id,
                    status=value.status,
                    at=at,
                    ttl_seconds=ttl(),
                )
            await merge_all(stream, events, pipe)

    return app


app = create_notifications_app()
