"""The orders worker: persisted status changes and the outbox relay.

(Placing an order is the HTTP API's use case: :mod:`orderflow.agents.placement`.)

* The agent on order-status-stream (orders-group) applies each reported status
  monotonically and, in the same store transaction, writes
  ``order.status_updated.v1`` to the outbox, then publishes it (the "published" mark
  is deferred: :mod:`orderflow.agents.publish_marks`). It takes the reports that have
  already arrived together (:mod:`orderflow.agents.concurrently`): different orders'
  writes at once, one order's in stream order, one publish for all. A status for a
  cancelled order is dropped by the store and counted
  (``orderflow_status_dropped_after_cancel_total{reported}``).
* A timer relays outbox messages that stayed unpublished for a few seconds,
  and (at most once a minute) deletes the rows published longer ago than
  ``ORDERFLOW_OUTBOX_RETENTION_SECONDS``. It polls every ``relay_interval``, and
  between polls it waits in ``store.wait_for_outbox``: a store that announces its
  commits (PostgreSQL, ``LISTEN/NOTIFY``) wakes it, so a message a crash left
  behind goes out ``relay_min_age`` after its commit (:class:`RelaySchedule`).
"""

from __future__ import annotations

import logging
from functools import partial

from redis.exceptions import RedisError

from orderflow.agents.cancellation import count_dropped
from orderflow.agents.concurrently import handle_and_publish
from orderflow.agents.messages import order_status_messages
from orderflow.agents.outbox import RelaySchedule, relay_once
from orderflow.agents.outbox_retention import OutboxPruner
from orderflow.agents.settings import get_settings
from orderflow.agents.store_provider import attach_store
from orderflow.agents.topics import ORDER_STATUS_STREAM, ORDERS_GROUP, declare_topic
from orderflow.models.events import OrderStatusReported
from orderflow.models.store import OutboxMessage, Store
from orderflow.runtime import App, Event, Stream

log = logging.getLogger(__name__)

RELAY_TICK_SECONDS = 0.01
"""The relay timer's own pause between ticks: the waiting happens in ``wait_for_outbox``."""
RELAY_MAX_WAIT_SECONDS = 0.25
"""The longest one tick waits for the store, so a stopping worker waits at most this long
for its relay (the runtime stops a timer between ticks)."""


def order_of(event: Event[OrderStatusReported]) -> str:
    """The key that orders the reports: one order's are applied in stream order."""
    return event.value.order_id


async def apply_order_status(
    store: Store, event: Event[OrderStatusReported]
) -> list[OutboxMessage]:
    """Apply one reported status (one transaction with its outbox); returns the rows."""
    report = event.value
    change = await store.update_order_status(
        report.order_id, report.status, report.at, partial(order_status_messages, cause=event)
    )
    if change.changed:
        log.info("order %s is now %s", report.order_id, report.status)
    elif change.cancelled:
        count_dropped(report.status)
        log.info("order %s is cancelled: status %s dropped", report.order_id, report.status)
    else:
        log.info("order %s: status %s is stale or repeated", report.order_id, report.status)
    return change.outbox


def create_orders_app(
    *,
    broker: str | None = None,
    store: Store | None = None,
    relay_interval: float | None = None,
    relay_min_age: float | None = None,
    outbox_retention: float | None = None,
) -> App:
    """Build the orders app; ``store`` (owned by the caller) overrides the settings' URL.

    ``relay_interval``, ``relay_min_age`` and ``outbox_retention`` (seconds)
    default to the ``outbox_*`` settings.
    """
    if relay_interval is None:
        relay_interval = get_settings().outbox_relay_interval_seconds
    if relay_min_age is None:
        relay_min_age = get_settings().outbox_relay_min_age_seconds
    if outbox_retention is None:
        outbox_retention = get_settings().outbox_retention_seconds
    pruner = OutboxPruner(outbox_retention)
    schedule = RelaySchedule(relay_interval, relay_min_age)
    app = App("orders", broker=broker, settings=get_settings())
    stores = attach_store(app, store)
    order_status = declare_topic(app, ORDER_STATUS_STREAM, OrderStatusReported)

    @app.agent(order_status, group=ORDERS_GROUP)
    async def persist_order_status(stream: Stream[OrderStatusReported]) -> None:
        async for events in stream.take_events(get_settings().agent_list_max_events):
            current = await stores.get()
            apply = partial(apply_order_status, current)
            await handle_and_publish(
                app, current, stream, events, apply, key=order_of, marks=await stores.marks()
            )

    @app.timer(RELAY_TICK_SECONDS)
    async def relay_outbox() -> None:
        current = await stores.get()
        wait = min(schedule.wait_seconds(), RELAY_MAX_WAIT_SECONDS)
        if await current.wait_for_outbox(wait):
            schedule.announced()
        if schedule.due():
            schedule.relayed()  # booked first: a failing pass is retried at the next poll
            try:
                relayed = await relay_once(app, current, relay_min_age, marks=await stores.marks())
            except (RedisError, OSError) as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, relay_interval)
            else:
                if relayed:
                    log.info("outbox relay: published %d message(s) left behind", relayed)
        # Store-only work, so it goes on while Redis is down; a no-op most ticks.
        await pruner.maybe_prune(current)

    return app


app = create_orders_app()
