"""The delivery service: one delivery per order that goes out, and its lifecycle.

* On ``order.status_updated.v1`` with ``out_for_delivery`` (orders-stream,
  delivery-group) it creates the order's delivery. Creation is idempotent in the
  store, so a duplicate event finds the existing delivery and does nothing
  more. The same transaction writes ``delivery.created.v1`` (deliveries-stream)
  and ``delivery.simulate.v1{on_the_way}`` (simulate-delivery-stream) to the outbox
  -- the latter only for a simulated order (the event's ``simulate``). What the
  courier needs (name, address, phone: ``DeliveryResult.recipient``) comes from the
  store in that transaction, never from an event; the log names the order and the
  delivery by id only, and says when the order has no delivery details (an API
  client placed it without ``customer``).
  A cancelled order never gets a delivery: the store never applies
  ``out_for_delivery`` to it (``cancelled`` outranks every status), so that event
  never exists for it.
* On ``delivery.status_reported.v1`` (delivery-status-stream) it applies the
  status monotonically with ``delivery.status_updated.v1`` in the outbox; when
  the delivery is ``delivered`` the outbox also gets
  ``order.status_reported.v1{delivered}`` for order-status-stream, so the
  orders service completes the order: no service calls another.
"""

from __future__ import annotations

import logging
from functools import partial

from orderflow.agents.messages import delivery_created_messages, delivery_status_messages
from orderflow.agents.outbox import publish_outbox
from orderflow.agents.settings import get_settings
from orderflow.agents.store_provider import attach_store
from orderflow.agents.topics import (
    DELIVERY_GROUP,
    DELIVERY_STATUS_STREAM,
    ORDERS_STREAM,
    declare_topic,
)
from orderflow.models.events import (
    DeliveryStatusReported,
    OrderStatusUpdated,
)
from orderflow.models.store import Store
from orderflow.runtime import App, Stream

log = logging.getLogger(__name__)


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
            result = await current.create_delivery(
                update.order_id,
                partial(delivery_created_messages, cause=event, simulate=update.simulate),
            )
            if result.created:
                await publish_outbox(app, current, result.outbox, marks=await stores.marks())
                log.info(
                    "order %s: delivery %s created%s",
                    update.order_id,
                    result.delivery.id,
                    "" if result.recipient else " (the order has no delivery details)",
                )
            else:
                log.info("order %s already has delivery %s", update.order_id, result.delivery.id)

    @app.agent(delivery_status, group=DELIVERY_GROUP)
    async def persist_delivery_status(stream: Stream[DeliveryStatusReported]) -> None:
        async for event in stream.events():
            report = event.value
            current = await stores.get()
            change = await current.update_delivery_status(
                report.delivery_id,
                report.status,
                report.at,
                partial(delivery_status_messages, cause=event),
            )
            if change.changed:
                await publish_outbox(app, current, change.outbox, marks=await stores.marks())
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
