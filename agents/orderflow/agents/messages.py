"""What each state change writes to the outbox: the events of the ordering system.

Built inside the store's transaction (only there are the new order, the new delivery
or the ``previous`` status known), by the use case or the agent that makes the
change. Kept apart from the worker modules so that importing them (the HTTP API does,
to place orders) builds no worker ``App``.
"""

from __future__ import annotations

from typing import Literal, cast

from orderflow.agents.outbox import Cause, outbox_message
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    MENU_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    SIMULATE_ORDER_STREAM,
)
from orderflow.models.documents import Delivery, DeliveryStatus, Order, OrderStatus
from orderflow.models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusUpdated,
    OrderCancelled,
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
    StockChanged,
)
from orderflow.models.store import Cancellation, OutboxMessage, StatusTransition

ORDERS_SOURCE = "orders"
DELIVERY_SOURCE = "delivery"


def order_created_messages(order: Order, correlation_id: str) -> list[OutboxMessage]:
    """The outbox of a new order: announce it, and start its simulated lifecycle unless
    it was placed with ``simulate: false`` (then it waits at ``created`` for an operator)."""
    created = outbox_message(
        ORDERS_STREAM,
        OrderCreated(
            order_id=order.id,
            lines=order.lines,
            total=order.total,
            created_at=order.created_at,
            simulate=order.simulate,
        ),
        source=ORDERS_SOURCE,
        key=order.id,
        correlation_id=correlation_id,
    )
    if not order.simulate:
        return [created]
    simulate = outbox_message(
        SIMULATE_ORDER_STREAM,
        OrderSimulate(order_id=order.id, status="confirmed"),
        source=ORDERS_SOURCE,
        key=order.id,
        correlation_id=correlation_id,
        causation_id=created.envelope.event_id,
    )
    return [created, simulate]


def order_status_messages(transition: StatusTransition, cause: Cause) -> list[OutboxMessage]:
    """``order.status_updated.v1``, built inside the store transaction (it knows ``previous``)."""
    update = OrderStatusUpdated(
        order_id=transition.order_id,
        status=cast(OrderStatus, transition.status),
        at=transition.at,
        previous=cast(OrderStatus, transition.previous),
        simulate=transition.simulate,
    )
    return [
        outbox_message(
            ORDERS_STREAM,
            update,
            source=ORDERS_SOURCE,
            key=transition.order_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
        )
    ]


def order_cancelled_messages(
    cancellation: Cancellation, correlation_id: str
) -> list[OutboxMessage]:
    """The outbox of a cancel: ``order.cancelled.v1`` for trackers and the status cache,
    and ``stock.changed.v1`` naming the items given back, for the open pages' live stock
    (the menu channel). Both in the cancel's own transaction: no cancel goes unannounced."""
    cancelled = outbox_message(
        ORDERS_STREAM,
        OrderCancelled(
            order_id=cancellation.order_id,
            at=cancellation.at,
            previous=cast(Literal["created", "confirmed"], cancellation.previous),
            simulate=cancellation.simulate,
        ),
        source=ORDERS_SOURCE,
        key=cancellation.order_id,
        correlation_id=correlation_id,
    )
    stock = outbox_message(
        MENU_STREAM,
        StockChanged(item_ids=list(cancellation.returned), at=cancellation.at),
        source=ORDERS_SOURCE,
        key=None,
        correlation_id=correlation_id,
        causation_id=cancelled.envelope.event_id,
    )
    return [cancelled, stock]


def delivery_created_messages(
    delivery: Delivery, cause: Cause, *, simulate: bool = True
) -> list[OutboxMessage]:
    """The outbox of a new delivery: announce it, and start its simulated lifecycle unless
    its order is not simulated (``simulate``, from the ``order.status_updated.v1`` that
    caused it: then an operator reports ``on_the_way``)."""
    created = outbox_message(
        DELIVERIES_STREAM,
        DeliveryCreated(
            delivery_id=delivery.id, order_id=delivery.order_id, created_at=delivery.created_at
        ),
        source=DELIVERY_SOURCE,
        key=delivery.order_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )
    if not simulate:
        return [created]
    start = outbox_message(
        SIMULATE_DELIVERY_STREAM,
        DeliverySimulate(delivery_id=delivery.id, order_id=delivery.order_id, status="on_the_way"),
        source=DELIVERY_SOURCE,
        key=delivery.order_id,
        correlation_id=cause.correlation_id,
        causation_id=created.envelope.event_id,
    )
    return [created, start]


def delivery_status_messages(transition: StatusTransition, cause: Cause) -> list[OutboxMessage]:
    """``delivery.status_updated.v1``, plus the order's ``delivered`` report when it is."""
    status = cast(DeliveryStatus, transition.status)
    messages = [
        outbox_message(
            DELIVERIES_STREAM,
            DeliveryStatusUpdated(
                delivery_id=transition.entity_id,
                order_id=transition.order_id,
                status=status,
                at=transition.at,
                previous=cast(DeliveryStatus, transition.previous),
                simulate=transition.simulate,
            ),
            source=DELIVERY_SOURCE,
            key=transition.order_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
        )
    ]
    if status == "delivered":
        messages.append(
            outbox_message(
                ORDER_STATUS_STREAM,
                OrderStatusReported(
                    order_id=transition.order_id, status="delivered", at=transition.at
                ),
                source=DELIVERY_SOURCE,
                key=transition.order_id,
                correlation_id=cause.correlation_id,
                causation_id=cause.event_id,
            )
        )
    return messages
