"""The delivery service: one delivery per order that goes out, and its lifecycle.

* On ``order.status_updated.v1`` with ``out_for_delivery`` (orders-stream,
  delivery-group) it creates the order's delivery. Creation is idempotent in the
  store, so a duplicate event finds the existing delivery and does nothing
  more. The same transaction writes ``delivery.created.v1`` (deliveries-stream)
  and ``delivery.simulate.v1{on_the_way}`` (simulate-delivery-stream) to the outbox.
* On ``delivery.status_reported.v1`` (delivery-status-stream) it applies the
  status monotonically with ``delivery.status_updated.v1`` in the outbox; when
  the delivery is ``delivered`` the outbox also gets
  ``order.status_reported.v1{delivered}`` for order-status-stream, so the
  orders service completes the order: no service calls another.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import cast

from orderflow.agents.outbox import Cause, MessageRecorder, outbox_message, publish_outbox
from orderflow.agents.settings import get_settings
from orderflow.agents.store_provider import attach_store
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    DELIVERY_GROUP,
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    declare_topic,
)
from orderflow.models.documents import Delivery, DeliveryStatus
from orderflow.models.events import (
    DeliveryCreated,
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    OrderStatusReported,
    OrderStatusUpdated,
)
from orderflow.models.store import OutboxMessage, StatusTransition, Store
from orderflow.runtime import App, Stream

log = logging.getLogger(__name__)

SOURCE = "delivery"


def delivery_created_messages(delivery: Delivery, cause: Cause) -> list[OutboxMessage]:
    """The outbox of a new delivery: announce it, and start its simulated lifecycle."""
    created = outbox_message(
        DELIVERIES_STREAM,
        DeliveryCreated(
            delivery_id=delivery.id, order_id=delivery.order_id, created_at=delivery.created_at
        ),
        source=SOURCE,
        key=delivery.order_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )
    simulate = outbox_message(
        SIMULATE_DELIVERY_STREAM,
        DeliverySimulate(delivery_id=delivery.id, order_id=delivery.order_id, status="on_the_way"),
        source=SOURCE,
        key=delivery.id,
        correlation_id=cause.correlation_id,
        causation_id=created.envelope.event_id,
    )
    return [created, simulate]


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
            ),
            source=SOURCE,
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
                source=SOURCE,
                key=transition.order_id,
                correlation_id=cause.correlation_id,
                causation_id=cause.event_id,
            )
        )
    return messages


def create_delivery_app(*, broker: str | None = None, store: Store | None = None) -> App:
    """Build the delivery app; ``store`` (owned by the caller) overrides the settings' URL."""
    app = App("delivery", broker=broker, settings=get_settings())
    stores = attach_store(app, store)
    orders = declare_topic(app, ORDERS_STREAM, OrderStatusUpdated)
    delivery_status = declare_topic(app, DELIVERY_STATUS_STREAM, DeliveryStatusReported)

    @app.agent(orders, group=DELIVERY_GROUP)
    async def create_deliveries(stream: Stream[OrderStatusUpdated]) -> None:
        async for event in stream.events():
            update = event.value
            if update.status != "out_for_delivery":
                continue
            current = await stores.get()
            recorder = MessageRecorder(partial(delivery_created_messages, cause=event))
            delivery, created = await current.create_delivery(update.order_id, recorder)
            if created:
                await publish_outbox(app.redis, current, recorder.messages)
                log.info("order %s: delivery %s created", update.order_id, delivery.id)
            else:
                log.info("order %s already has delivery %s", update.order_id, delivery.id)

    @app.agent(delivery_status, group=DELIVERY_GROUP)
    async def persist_delivery_status(stream: Stream[DeliveryStatusReported]) -> None:
        async for event in stream.events():
            report = event.value
            current = await stores.get()
            recorder = MessageRecorder(partial(delivery_status_messages, cause=event))
            changed = await current.update_delivery_status(
                report.delivery_id, report.status, report.at, recorder
            )
            if changed:
                await publish_outbox(app.redis, current, recorder.messages)
                log.info(
                    "delivery %s of order %s is now %s",
                    report.delivery_id,
                    report.order_id,
                    report.status,
                )
            else:
                log.info(
                    "delivery %s: status %s is stale or repeated", report.delivery_id, report.status
                )

    return app


app = create_delivery_app()
