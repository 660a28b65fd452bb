"""Stream names and topic definitions shared by every orderflow service.

Each service runs its own :class:`~orderflow.runtime.App` (one process per service
in production), so topics cannot be module-level singletons: a topic belongs to
the app that declares it. :func:`declare_topic` declares one on any app, so the
stream names and the record types that travel on each stream are written down
exactly once, here.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from orderflow.models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
    StockChanged,
)
from orderflow.runtime import App, Record, Topic, keys

T = TypeVar("T", bound=Record)

ORDERS_STREAM = "orders-stream"
DELIVERIES_STREAM = "deliveries-stream"
ORDER_STATUS_STREAM = "order-status-stream"
DELIVERY_STATUS_STREAM = "delivery-status-stream"
SIMULATE_ORDER_STREAM = "simulate-order-stream"
SIMULATE_DELIVERY_STREAM = "simulate-delivery-stream"
MENU_STREAM = "menu-stream"
DEAD_LETTERS_STREAM = keys.DEAD_LETTERS

#: Every stream the reference system uses, in the order of the event flow.
ALL_STREAMS: tuple[str, ...] = (
    ORDERS_STREAM,
    DELIVERIES_STREAM,
    ORDER_STATUS_STREAM,
    DELIVERY_STATUS_STREAM,
    SIMULATE_ORDER_STREAM,
    SIMULATE_DELIVERY_STREAM,
    MENU_STREAM,
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
    MENU_STREAM: (StockChanged,),
}

#: Consumer group of each service: one group per service, so every service sees every
#: entry of the streams it reads, and replicas of one service share the work.
ORDERS_GROUP = "orders-group"
DELIVERY_GROUP = "delivery-group"
NOTIFICATIONS_GROUP = "notifications-group"
SIMULATOR_GROUP = "simulator-group"


@overload
def declare_topic(app: App, stream: str, value_type: type[T]) -> Topic[T]: ...


@overload
def declare_topic(
    app: App, stream: str, value_type: tuple[type[Record], ...] | None = None
) -> Topic[Any]: ...


def declare_topic(
    app: App,
    stream: str,
    value_type: type[Record] | tuple[type[Record], ...] | None = None,
) -> Topic[Any]:
    """Declare ``stream`` on ``app``, accepting ``value_type`` (default: all its records).

    A service declares each stream it uses once, with the types its agents accept
    (declaring it again with other types raises, see ``App.topic``). With one record
    class the topic is typed (``Topic[OrderStatusReported]``), so its agents iterate
    that type without casts. The stream's MAXLEN cap is the app's (``stream_maxlen``).
    """
    accepted = value_type if value_type is not None else STREAM_RECORDS[stream]
    return app.topic(stream, value_type=accepted)
