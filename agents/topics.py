"""Stream names and topic definitions shared by every orderflow service.

Each service runs its own :class:`~agents.runtime.App` (one process per service
in production), so topics cannot be module-level singletons: a topic belongs to
the app that declares it. :func:`build_topics` declares the same set of topics on
any app, so the stream names and the record types that travel on each stream are
written down exactly once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.runtime import App, Record, Topic
from agents.settings import get_settings
from models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
)

ORDERS_STREAM = "orders-stream"
DELIVERIES_STREAM = "deliveries-stream"
ORDER_STATUS_STREAM = "order-status-stream"
DELIVERY_STATUS_STREAM = "delivery-status-stream"
SIMULATE_ORDER_STREAM = "simulate-order-stream"
SIMULATE_DELIVERY_STREAM = "simulate-delivery-stream"
DEAD_LETTERS_STREAM = "dead-letters"

#: Every stream the reference system uses, in the order of the event flow.
ALL_STREAMS: tuple[str, ...] = (
    ORDERS_STREAM,
    DELIVERIES_STREAM,
    ORDER_STATUS_STREAM,
    DELIVERY_STATUS_STREAM,
    SIMULATE_ORDER_STREAM,
    SIMULATE_DELIVERY_STREAM,
    DEAD_LETTERS_STREAM,
)

#: The record types published on each stream (a consumer may accept a subset).
STREAM_RECORDS: dict[str, tuple[type[Record], ...]] = {
    ORDERS_STREAM: (OrderCreated, OrderStatusUpdated),
    DELIVERIES_STREAM: (DeliveryCreated, DeliveryStatusUpdated),
    ORDER_STATUS_STREAM: (OrderStatusReported,),
    DELIVERY_STATUS_STREAM: (DeliveryStatusReported,),
    SIMULATE_ORDER_STREAM: (OrderSimulate,),
    SIMULATE_DELIVERY_STREAM: (DeliverySimulate,),
}

#: Consumer group of each service (one group per service, see the brief).
ORDERS_GROUP = "orders-group"
DELIVERY_GROUP = "delivery-group"
NOTIFICATIONS_GROUP = "notifications-group"
SIMULATOR_GROUP = "simulator-group"


@dataclass(frozen=True)
class ServiceTopics:
    """The six business streams, declared on one app."""

    orders: Topic
    deliveries: Topic
    order_status: Topic
    delivery_status: Topic
    simulate_order: Topic
    simulate_delivery: Topic


def declare_topic(
    app: App,
    stream: str,
    value_type: type[Record] | tuple[type[Record], ...] | None = None,
) -> Topic:
    """Declare ``stream`` on ``app``, accepting ``value_type`` (default: all its records).

    An app has one topic per stream: declaring a stream again returns the first
    declaration, so a service declares each stream it uses once, with the types
    its agents accept.
    """
    accepted = value_type if value_type is not None else STREAM_RECORDS[stream]
    return app.topic(stream, value_type=accepted, maxlen=get_settings().stream_maxlen)


def build_topics(app: App) -> ServiceTopics:
    """Declare every business stream on ``app`` with the records it carries."""
    return ServiceTopics(
        orders=declare_topic(app, ORDERS_STREAM),
        deliveries=declare_topic(app, DELIVERIES_STREAM),
        order_status=declare_topic(app, ORDER_STATUS_STREAM),
        delivery_status=declare_topic(app, DELIVERY_STATUS_STREAM),
        simulate_order=declare_topic(app, SIMULATE_ORDER_STREAM),
        simulate_delivery=declare_topic(app, SIMULATE_DELIVERY_STREAM),
    )
