"""End to end: an order placed through the use case reaches ``delivered`` by choreography.

All four services run in-process against a real Valkey and a SQLite file, with
zero simulator delays. The tests check the outcome in the store (history,
delivery), on the streams (each event exactly once, one correlation id for the
whole story) and in the notifications cache (latest status, TTL <= 24 h).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from orderflow.agents.placement import place_order
from orderflow.agents.services import create_service_apps
from orderflow.agents.status_cache import read_latest_status, status_key
from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.runtime import App
from orderflow.runtime.testing import eventually
from tests.system.conftest import envelopes_for_order, running

ORDER_LIFECYCLE = ["created", "confirmed", "preparing", "out_for_delivery", "delivered"]
DELIVERY_LIFECYCLE = ["waiting", "on_the_way", "delivered"]
DAY = 24 * 3600


async def wait_delivered(store: Store, order_id: str) -> None:
    async def delivered() -> bool:
        order = await store.get_order(order_id)
        return (
            order is not None
            and order.status == "delivered"
            and order.delivery is not None
            and order.delivery.status == "delivered"
        )

    await eventually(delivered, timeout=30)


async def test_order_reaches_delivered_with_full_history(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    stock_before = {item.id: item.stock for item in await store.list_menu()}
    result = await place_order(
        store,
        publisher,
        [
            OrderLineRequest(item_id="margherita", quantity=2),
            OrderLineRequest(item_id="tiramisu", quantity=1),
        ],
    )
    order_id = result.order.id
    assert result.order.status == "created"
    assert not result.replayed

    await wait_delivered(store, order_id)

    order = await store.get_order(order_id)
    assert order is not None and order.delivery is not None
    assert [change.status for change in order.history] == ORDER_LIFECYCLE
    assert [change.status for change in order.delivery.history] == DELIVERY_LIFECYCLE
    assert [c.at for c in order.history] == sorted(c.at for c in order.history)
    stock_after = {item.id: item.stock for item in await store.list_menu()}
    assert stock_after["margherita"] == stock_before["margherita"] - 2
    assert stock_after["tiramisu"] == stock_before["tiramisu"] - 1

    # Each status was announced exactly once, in lifecycle order.
    updates = await envelopes_for_order(
        redis_client, ORDERS_STREAM, order_id, "order.status_updated.v1"
    )
    assert [u.payload["status"] for u in updates] == ORDER_LIFECYCLE[1:]
    assert [u.payload["previous"] for u in updates] == ORDER_LIFECYCLE[:-1]
    created = await envelopes_for_order(redis_client, ORDERS_STREAM, order_id, "order.created.v1")
    assert len(created) == 1
    assert created[0].payload["total"] == result.order.total

    # Exactly one delivery, announced once, with its whole lifecycle.
    deliveries = await envelopes_for_order(redis_client, DELIVERIES_STREAM, order_id)
    assert [d.event_type for d in deliveries] == [
        "delivery.created.v1",
        "delivery.status_updated.v1",
        "delivery.status_updated.v1",
    ]
    assert {d.payload["delivery_id"] for d in deliveries} == {order.delivery.id}
    assert [d.payload["status"] for d in deliveries] == DELIVERY_LIFECYCLE

    # One correlation id follows the order through every service.
    assert {e.correlation_id for e in [*created, *updates, *deliveries]} == {
        created[0].correlation_id
    }
    assert {e.source for e in updates} == {"orders"}
    assert {e.source for e in deliveries} == {"delivery"}

    # The notifications cache ends on the latest status, with a TTL of at most 24 h.
    async def cached_delivered() -> bool:
        cached = await read_latest_status(redis_client, order_id)
        return (
            cached is not None
            and cached["status"] == "delivered"
            and cached["delivery"] is not None
            and cached["delivery"]["status"] == "delivered"
        )

    await eventually(cached_delivered, timeout=30)
    cached = await read_latest_status(redis_client, order_id)
    assert cached is not None
    assert cached["order_id"] == order_id
    assert cached["delivery"]["delivery_id"] == order.delivery.id
    ttl = await redis_client.ttl(status_key(order_id))
    assert 0 < ttl <= DAY


async def test_many_orders_all_reach_delivered(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    order_ids = [
        (
            await place_order(store, publisher, [OrderLineRequest(item_id="diavola", quantity=1)])
        ).order.id
        for _ in range(10)
    ]
    for order_id in order_ids:
        await wait_delivered(store, order_id)
    for order_id in order_ids:
        order = await store.get_order(order_id)
        assert order is not None and order.delivery is not None
        assert [change.status for change in order.history] == ORDER_LIFECYCLE
        assert [change.status for change in order.delivery.history] == DELIVERY_LIFECYCLE
    assert len({(await store.get_order(o)).delivery.id for o in order_ids}) == 10  # type: ignore[union-attr]


async def test_random_delays_never_reorder_a_lifecycle(
    redis_url: str, redis_client: aioredis.Redis, store: Store, publisher: App
) -> None:
    """Delays in [0, 50 ms]: each report is caused by the persisted previous status,
    so none overtakes its predecessor and every history is complete and in order."""
    async with running(
        create_service_apps(broker=redis_url, store=store, simulator_delay=(0.0, 0.05))
    ):
        order_ids = [
            (
                await place_order(
                    store, publisher, [OrderLineRequest(item_id="sparkling-water", quantity=1)]
                )
            ).order.id
            for _ in range(20)
        ]
        for order_id in order_ids:
            await wait_delivered(store, order_id)
    for order_id in order_ids:
        order = await store.get_order(order_id)
        assert order is not None and order.delivery is not None
        assert [change.status for change in order.history] == ORDER_LIFECYCLE
        assert [change.status for change in order.delivery.history] == DELIVERY_LIFECYCLE
