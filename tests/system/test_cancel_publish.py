"""A cancel whose events cannot be published at once is still a cancel: the outbox keeps
them, the relay publishes them later, and the stock came back in the same transaction."""

from __future__ import annotations

import redis.asyncio as aioredis

from orderflow.agents.cancellation import cancel_order
from orderflow.agents.outbox import relay_once
from orderflow.agents.placement import place_order
from orderflow.agents.topics import MENU_STREAM, ORDERS_STREAM
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.runtime import App
from tests.system.conftest import envelopes_for_order, stream_envelopes


async def test_redis_down_at_cancel_time_leaves_the_events_to_the_relay(
    store: Store, redis_client: aioredis.Redis, dead_publisher: App, publisher: App
) -> None:
    stock = {item.id: item.stock for item in await store.list_menu()}
    order = (
        await place_order(store, publisher, [OrderLineRequest(item_id="funghi", quantity=2)])
    ).order

    result = await cancel_order(store, dead_publisher, order.id)

    assert result.cancelled and result.order.status == "cancelled"
    assert {item.id: item.stock for item in await store.list_menu()} == stock
    pending = await store.outbox_pending(limit=100)
    assert [m.envelope.event_type for m in pending] == ["order.cancelled.v1", "stock.changed.v1"]
    assert await relay_once(publisher, store, min_age_seconds=0) == 2
    assert await store.outbox_pending(limit=100) == []
    types = [e.event_type for e in await envelopes_for_order(redis_client, ORDERS_STREAM, order.id)]
    assert types == ["order.created.v1", "order.cancelled.v1"]
    (announced,) = await stream_envelopes(redis_client, MENU_STREAM)
    assert announced.payload["item_ids"] == ["funghi"]
    # Both events of the cancel carry one correlation id, the stock's caused by the cancel's.
    cancelled = (await envelopes_for_order(redis_client, ORDERS_STREAM, order.id))[1]
    assert announced.correlation_id == cancelled.correlation_id
    assert announced.causation_id == cancelled.event_id
