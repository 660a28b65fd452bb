"""Stream names and topic definitions shared by every orderflow service.

Each service runs its own :class:`~orderflow.runtime.App` (one process per service
in production), so topics cannot be module-level singletons: a topic belongs to
the app that declares it. :func:`declare_topic` declares one on any app, so the
stream names and the record types that travel on each stream are written down
exactly once, here.

The per-order topics (:data:`PARTITIONED_STREAMS`) are declared with
``ORDERFLOW_TOPIC_PARTITIONS`` partitions, and every producer sends with
``key=<order id>``: all events of one order land in the same partition of each
topic, in order, and under Redis Cluster the partitions spread over the masters.
The menu stream and the dead letters stay single streams (see below).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from orderflow.agents.settings import Settings, get_settings
from orderflow.models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    OrderCancelled,
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
    StockChanged,
)
from orderflow.runtime import App, Record, Topic, keys
from orderflow.runtime.partitions import partition_streams

T = TypeVar("T", bound=Record)

ORDERS_STREAM = "orders-stream"
DELIVERIES_STREAM = "deliveries-stream"
ORDER_STATUS_STREAM = "order-status-stream"
DELIVERY_STATUS_STREAM = "delivery-status-stream"
SIMULATE_ORDER_STREAM = "simulate-order-stream"
SIMULATE_DELIVERY_STREAM = "simulate-delivery-stream"
MENU_STREAM = "menu-stream"
DEAD_LETTERS_STREAM = keys.DEAD_LETTERS

#: The per-order streams, in the order of the event flow: partitioned by order id
#: (``ORDERFLOW_TOPIC_PARTITIONS``). The others stay one stream each: ``menu-stream``
#: carries stock levels of the menu (no order id, a few events per order, read in full
#: by every gateway for the menu view) and ``dead-letters`` is the runtime's one stream
#: of failures, rare by design; neither is a hot path one master's core could not serve.
PER_ORDER_STREAMS: tuple[str, ...] = (
    ORDERS_STREAM,
    DELIVERIES_STREAM,
    ORDER_STATUS_STREAM,
    DELIVERY_STATUS_STREAM,
    SIMULATE_ORDER_STREAM,
    SIMULATE_DELIVERY_STREAM,
)
PARTITIONED_STREAMS: frozenset[str] = frozenset(PER_ORDER_STREAMS)

#: Every stream the reference system uses, in the order of the event flow.
ALL_STREAMS: tuple[str, ...] = (*PER_ORDER_STREAMS, MENU_STREAM, DEAD_LETTERS_STREAM)

#: The record types published on each stream (a consumer may accept a subset).
STREAM_RECORDS: dict[str, tuple[type[Record], ...]] = {
    ORDERS_STREAM: (OrderCreated, OrderStatusUpdated, OrderCancelled),
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
    that type without casts. The stream's MAXLEN cap is the app's (``stream_maxlen``); a
    per-order stream gets the partitions of :func:`partitions_of`.
    """
    accepted = value_type if value_type is not None else STREAM_RECORDS[stream]
    return app.topic(stream, value_type=accepted, partitions=partitions_of(app, stream))


def partitions_of(app: App, stream: str) -> int:
    """How many partitions ``stream`` has in ``app``: ``topic_partitions`` of the app's
    settings (the process's ``ORDERFLOW_*`` settings when the app was built with the
    runtime's only) for the per-order streams, 1 for the others."""
    if stream not in PARTITIONED_STREAMS:
        return 1
    settings = app.settings if isinstance(app.settings, Settings) else get_settings()
    return settings.topic_partitions


def topic_streams(stream: str, partitions: int | None = None) -> tuple[str, ...]:
    """The Redis streams of topic ``stream``: itself, or its partitions ``<stream>.p<i>``
    when it is partitioned (``partitions`` default: this process's settings)."""
    if stream not in PARTITIONED_STREAMS:
        return (stream,)
    count = get_settings().topic_partitions if partitions is None else partitions
    return partition_streams(stream, count)
