"""Event records of the ordering system, one class per versioned event type.

The type string (``order.created.v1``) is what travels in the envelope, so a
consumer can tell versions apart; a breaking change gets a new class with
``.v2`` rather than a silent change to this one. Payload fields mirror the
documents in :mod:`orderflow.models.documents` (timestamps are UTC ISO-8601 text, money
is integer cents).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from orderflow.models.documents import (
    DeliveryStatus,
    EntityId,
    OrderLine,
    OrderStatus,
    Timestamp,
)
from orderflow.runtime.records import Record


class SimulateFlag(Record):
    """The order's ``simulate`` flag on an event, on the wire only when it is ``false``.

    Records forbid unknown fields, so a consumer of an older release would refuse a
    ``.v1`` event carrying a field it does not know. Leaving the flag out when it
    is ``true`` keeps every simulated order's events exactly as they were (older
    consumers, events already in the streams and outbox decode as simulated); only
    an order placed with ``"simulate": false`` -- a new feature, which needs the
    new workers -- carries it.
    """

    simulate: bool = True

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        if payload.get("simulate") is True:
            del payload["simulate"]
        return payload


class OrderCreated(SimulateFlag, event_type="order.created.v1"):
    """An order was placed and its stock reserved (written by the order transaction)."""

    order_id: EntityId
    lines: list[OrderLine]
    total: int
    status: Literal["created"] = "created"
    created_at: Timestamp


class OrderSimulate(Record, event_type="order.simulate.v1"):
    """Ask the simulator to report ``status`` for this order after a random delay."""

    order_id: EntityId
    status: OrderStatus


class OrderStatusReported(Record, event_type="order.status_reported.v1"):
    """Someone outside the orders service says the order reached ``status``."""

    order_id: EntityId
    status: OrderStatus
    at: Timestamp


class OrderStatusUpdated(SimulateFlag, event_type="order.status_updated.v1"):
    """The orders service persisted a newer status (monotonic: ``previous`` < ``status``)."""

    order_id: EntityId
    status: OrderStatus
    at: Timestamp
    previous: OrderStatus


class OrderCancelled(SimulateFlag, event_type="order.cancelled.v1"):
    """The customer cancelled the order before ``preparing``; its stock is back.

    Written by the cancel transaction (``Store.cancel_order``) on orders-stream, after
    which the order never moves again: ``cancelled`` is terminal (see
    ``orderflow.models.documents.ORDER_STATUS_RANKS``). ``previous`` is the status it
    was cancelled from.
    """

    order_id: EntityId
    status: Literal["cancelled"] = "cancelled"
    at: Timestamp
    previous: Literal["created", "confirmed"]


class DeliveryCreated(Record, event_type="delivery.created.v1"):
    """A delivery was created for an order that went out for delivery (once per order)."""

    delivery_id: EntityId
    order_id: EntityId
    status: Literal["waiting"] = "waiting"
    created_at: Timestamp


class DeliverySimulate(Record, event_type="delivery.simulate.v1"):
    """Ask the simulator to report ``status`` for this delivery after a random delay."""

    delivery_id: EntityId
    order_id: EntityId
    status: DeliveryStatus


class DeliveryStatusReported(Record, event_type="delivery.status_reported.v1"):
    """Someone outside the delivery service says the delivery reached ``status``."""

    delivery_id: EntityId
    order_id: EntityId
    status: DeliveryStatus
    at: Timestamp


class DeliveryStatusUpdated(SimulateFlag, event_type="delivery.status_updated.v1"):
    """The delivery service persisted a newer status (monotonic)."""

    delivery_id: EntityId
    order_id: EntityId
    status: DeliveryStatus
    at: Timestamp
    previous: DeliveryStatus


class StockChanged(Record, event_type="stock.changed.v1"):
    """Someone set stock levels outside an order (refill, the ops console's set-stock),
    or a cancelled order gave its stock back (written by the cancel transaction).

    Placing an order needs no such event: ``order.created.v1`` already says stock was
    reserved. The event names the items but carries no levels: a reader that shows
    stock reads the levels once (the gateway's menu fan-out), so a late or repeated
    event can never show an old level.
    """

    item_ids: list[str] = Field(default_factory=list, max_length=10_000)
    """The items whose stock changed; empty means every item (a refill)."""
    at: Timestamp


ALL_EVENTS: tuple[type[Record], ...] = (
    OrderCreated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
    OrderCancelled,
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    StockChanged,
)

__all__ = [
    "ALL_EVENTS",
    "DeliveryCreated",
    "DeliverySimulate",
    "DeliveryStatusReported",
    "DeliveryStatusUpdated",
    "OrderCancelled",
    "OrderCreated",
    "OrderSimulate",
    "OrderStatusReported",
    "OrderStatusUpdated",
    "SimulateFlag",
    "StockChanged",
]
