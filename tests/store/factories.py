"""Outbox factories shaped like the services' (the store only stores what they return)."""

from __future__ import annotations

from orderflow.models.documents import Delivery, Order, OrderLineRequest
from orderflow.models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusUpdated,
    OrderCancelled,
    OrderCreated,
    OrderSimulate,
    OrderStatusUpdated,
    StockChanged,
)
from orderflow.models.store import (
    Cancellation,
    OutboxMessage,
    PlaceOrderResult,
    StatusTransition,
    Store,
)
from orderflow.runtime.envelope import Envelope

SOURCE = "tests.store"


def line(item_id: str, quantity: int) -> OrderLineRequest:
    return OrderLineRequest(item_id=item_id, quantity=quantity)


async def place(
    store: Store,
    *lines_: OrderLineRequest,
    key: str | None = None,
    request_hash: str | None = None,
) -> PlaceOrderResult:
    """Place an order of ``lines_`` with the services' outbox (``order_events``)."""
    return await store.place_order(
        list(lines_), idempotency_key=key, request_hash=request_hash, events=order_events
    )


async def stock_of(store: Store) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


def order_events(order: Order) -> list[OutboxMessage]:
    created = OrderCreated(
        order_id=order.id, lines=order.lines, total=order.total, created_at=order.created_at
    )
    return [
        OutboxMessage(
            stream="orders-stream", envelope=Envelope.new(created, source=SOURCE, key=order.id)
        ),
        OutboxMessage(
            stream="simulate-order-stream",
            envelope=Envelope.new(
                OrderSimulate(order_id=order.id, status="confirmed"), source=SOURCE, key=order.id
            ),
        ),
    ]


def order_status_events(change: StatusTransition) -> list[OutboxMessage]:
    updated = OrderStatusUpdated(
        order_id=change.order_id,
        status=change.status,
        at=change.at,
        previous=change.previous,
    )
    return [
        OutboxMessage(
            stream="orders-stream",
            envelope=Envelope.new(updated, source=SOURCE, key=change.order_id),
        )
    ]


def delivery_events(delivery: Delivery) -> list[OutboxMessage]:
    created = DeliveryCreated(
        delivery_id=delivery.id, order_id=delivery.order_id, created_at=delivery.created_at
    )
    simulate = DeliverySimulate(
        delivery_id=delivery.id, order_id=delivery.order_id, status="on_the_way"
    )
    return [
        OutboxMessage(
            stream="deliveries-stream",
            envelope=Envelope.new(created, source=SOURCE, key=delivery.order_id),
        ),
        OutboxMessage(
            stream="simulate-delivery-stream",
            envelope=Envelope.new(simulate, source=SOURCE, key=delivery.order_id),
        ),
    ]


def delivery_status_events(change: StatusTransition) -> list[OutboxMessage]:
    updated = DeliveryStatusUpdated(
        delivery_id=change.entity_id,
        order_id=change.order_id,
        status=change.status,
        at=change.at,
        previous=change.previous,
    )
    return [
        OutboxMessage(
            stream="deliveries-stream",
            envelope=Envelope.new(updated, source=SOURCE, key=change.order_id),
        )
    ]


def cancel_events(cancellation: Cancellation) -> list[OutboxMessage]:
    cancelled = OrderCancelled(
        order_id=cancellation.order_id,
        at=cancellation.at,
        previous=cancellation.previous,
        simulate=cancellation.simulate,
    )
    stock = StockChanged(item_ids=list(cancellation.returned), at=cancellation.at)
    return [
        OutboxMessage(
            stream="orders-stream",
            envelope=Envelope.new(cancelled, source=SOURCE, key=cancellation.order_id),
        ),
        OutboxMessage(stream="menu-stream", envelope=Envelope.new(stock, source=SOURCE)),
    ]
