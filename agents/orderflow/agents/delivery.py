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

Both agents take the events that have already arrived together
(:mod:`orderflow.agents.concurrently`): different orders' store writes at once, one
order's in stream order, one publish for all of their outbox rows.
"""

from __future__ import annotations

import logging
from functools import partial

from orderflow.agents.concurrently import handle_and_publish
from orderflow.agents.messages import delivery_created_messages, delivery_status_messages
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
from orderflow.models.store import OutboxMessage, Store
from orderflow.runtime import App, Event, Stream

log = logging.getLogger(__name__)


def order_of(event: Event[OrderStatusUpdated] | Event[DeliveryStatusReported]) -> str:
    """The key that orders the events: one order's are handled in stream order."""
    return event.value.order_id


async def create_order_delivery(
    store: Store, event: Event[OrderStatusUpdated]
) -> list[OutboxMessage]:
    """Create the order's delivery on ``out_for_delivery`` (idempotent); returns the rows."""
    update = event.value
    if update.status != "out_for_delivery":
        return []
    result = await store.create_delivery(
        update.order_id,
        partial(delivery_created_messages, cause=event, simulate=update.simulate),
    )
    if result.created:
        log.info(
            "order %s: delivery %s created%s",
            update.order_id,
            result.delivery.id,
            "" if result.recipient else " (the order has no delivery details)",
        )
    else:
        log.info("order %s already has delivery %s", update.order_id, result.delivery.id)
    return result.outbox


async def apply_delivery_status(
    store: Store, event: Event[DeliveryStatusReported]
) -> list[OutboxMessage]:
    """Apply one reported delivery status (one transaction with its outbox)."""
    report = event.value
    change = await store.update_delivery_status(
        report.delivery_id, report.status, report.at, partial(delivery_status_messages, cause=event)
    )
    if change.changed:
        log.info("delivery %s of order %s is now %s", report.delivery_id, report.order_id,
                 report.status)  # fmt: skip
    else:
        log.info("delivery %s: status %s is stale or repeated", report.delivery_id, report.status)
    return change.outbox


def create_delivery_app(*, broker: str | None = None, store: Store | None = None) -> App:
    """Build the delivery app; ``store`` (owned by the caller) overrides the settings' URL."""
    app = App("delivery", broker=broker, settings=get_settings())
    stores = attach_store(app, store)
    orders = declare_topic(app, ORDERS_STREAM, OrderStatusUpdated)
    delivery_status = declare_topic(app, DELIVERY_STATUS_STREAM, DeliveryStatusReported)

    @app.agent(orders, group=DELIVERY_GROUP)
    async def create_deliveries(stream: Stream[OrderStatusUpdated]) -> None:
        async for events in stream.take_events(get_settings().agent_list_max_events):
            current = await stores.get()
            create = partial(create_order_delivery, current)
            await handle_and_publish(
                app, current, stream, events, create, key=order_of, marks=await stores.marks()
            )

    @app.agent(delivery_status, group=DELIVERY_GROUP)
    async def persist_delivery_status(stream: Stream[DeliveryStatusReported]) -> None:
        async for events in stream.take_events(get_settings().agent_list_max_events):
            current = await stores.get()
            apply = partial(apply_delivery_status, current)
            await handle_and_publish(
                app, current, stream, events, apply, key=order_of, marks=await stores.marks()
            )

    return app


app = create_delivery_app()
