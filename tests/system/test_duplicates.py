"""Duplicates have no second effect: redelivered copies and re-sent statuses change nothing.

Two kinds of duplicate reach services in real life: the same envelope again
(a redelivery, an outbox re-publish; same ``event_id``) and a new envelope that
repeats old news (a simulator request processed twice; new ``event_id``). The
runtime's dedupe drops the first kind; the store's monotonic transitions and
idempotent delivery creation absorb the second.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from orderflow.agents.placement import place_order
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
)
from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import DeliveryStatusReported, OrderStatusReported, OrderStatusUpdated
from orderflow.models.store import Store
from orderflow.runtime import App, Envelope
from orderflow.runtime.testing import eventually
from tests.system.conftest import all_consumed, envelopes_for_order
from tests.system.test_lifecycle import wait_delivered


async def snapshot(redis: aioredis.Redis, store: Store, order_id: str) -> dict[str, Any]:
    """Everything a duplicate could change: the stored order and the event ids on each stream."""
    order = await store.get_order(order_id)
    assert order is not None
    state: dict[str, Any] = {"order": order.model_dump()}
    for stream in (ORDERS_STREAM, DELIVERIES_STREAM, ORDER_STATUS_STREAM, DELIVERY_STATUS_STREAM):
        state[stream] = {e.event_id for e in await envelopes_for_order(redis, stream, order_id)}
    return state


async def test_duplicate_events_have_no_second_effect(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    result = await place_order(store, publisher, [OrderLineRequest(item_id="lasagne", quantity=1)])
    order_id = result.order.id
    await wait_delivered(store, order_id)
    await eventually(lambda: all_consumed(redis_client), timeout=30)
    before = await snapshot(redis_client, store, order_id)
    order = await store.get_order(order_id)
    assert order is not None and order.delivery is not None
    delivery_id = order.delivery.id

    # 1. The very same entries again (same event ids): redelivery / re-publish.
    copied = 0
    for stream in (ORDERS_STREAM, ORDER_STATUS_STREAM, DELIVERY_STATUS_STREAM):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis_client.xrange(stream)  # type: ignore[assignment]
        for _, fields in entries:
            if Envelope.from_fields(fields).payload.get("order_id") == order_id:
                await redis_client.xadd(stream, fields)  # type: ignore[arg-type]
                copied += 1
    assert copied >= 10

    # 2. Old news in new envelopes (new event ids): stale statuses, a second "go out".
    stale = [
        (ORDERS_STREAM, OrderStatusUpdated(
            order_id=order_id, status="out_for_delivery", at=utc_now(), previous="preparing"
        )),
        (ORDER_STATUS_STREAM, OrderStatusReported(
            order_id=order_id, status="preparing", at=utc_now()
        )),
        (ORDER_STATUS_STREAM, OrderStatusReported(
            order_id=order_id, status="delivered", at=utc_now()
        )),
        (DELIVERY_STATUS_STREAM, DeliveryStatusReported(
            delivery_id=delivery_id, order_id=order_id, status="on_the_way", at=utc_now()
        )),
        (DELIVERY_STATUS_STREAM, DeliveryStatusReported(
            delivery_id=delivery_id, order_id=order_id, status="delivered", at=utc_now()
        )),
    ]  # fmt: skip
    injected: dict[str, set[str]] = {}
    for stream, value in stale:
        envelope = Envelope.new(value, source="test", key=order_id)
        await redis_client.xadd(stream, envelope.to_fields())  # type: ignore[arg-type]
        injected.setdefault(stream, set()).add(envelope.event_id)

    await eventually(lambda: all_consumed(redis_client), timeout=30)
    after = await snapshot(redis_client, store, order_id)
    # The stored order is exactly as it was, and no service wrote any new event:
    # every stream holds only what it held before plus what this test injected.
    assert after["order"] == before["order"]
    for stream in (ORDERS_STREAM, DELIVERIES_STREAM, ORDER_STATUS_STREAM, DELIVERY_STATUS_STREAM):
        assert after[stream] == before[stream] | injected.get(stream, set()), stream
