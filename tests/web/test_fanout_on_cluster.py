"""The gateway's fan-out on a Redis Cluster: ``orders-stream`` and ``deliveries-stream``
hash to different slots, so one ``XREAD`` over both would fail with ``CROSSSLOT``; the
hub reads them with one follower (one connection to the owning node) each, and keeps
its reorder window so that an order's and its delivery's updates still arrive in order.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from orderflow.models.documents import utc_now
from orderflow.models.events import DeliveryStatusUpdated, OrderStatusUpdated
from orderflow.runtime import App
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localcluster import LocalCluster
from orderflow.web.fanout import TRACKED_STREAMS, DeliveryUpdate, OrderUpdate, TrackingHub
from tests.web.test_fanout import GUARD, alternating_updates, at_of, future_ms, publish, take


async def test_the_hub_follows_both_streams_of_different_slots_on_a_cluster(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    slots = {redis_cluster_client.keyslot(s) for s in TRACKED_STREAMS}  # type: ignore[attr-defined]
    assert len(slots) == len(TRACKED_STREAMS)  # one XREAD over both would be CROSSSLOT
    app = App("test-gateway-cluster", broker=redis_cluster.url, block_ms=200)
    hub = TrackingHub(app)
    hub.start()
    try:
        assert await hub.wait_ready(GUARD)
        order_id = uuid.uuid4().hex
        with hub.subscribe(order_id) as subscription:
            order: Any = Envelope.new(
                OrderStatusUpdated(
                    order_id=order_id, status="confirmed", at=utc_now(), previous="created"
                ),
                source="test",
            ).to_fields()
            await redis_cluster_client.xadd("orders-stream", order)
            delivery: Any = Envelope.new(
                DeliveryStatusUpdated(
                    delivery_id=uuid.uuid4().hex,
                    order_id=order_id,
                    status="on_the_way",
                    at=utc_now(),
                    previous="waiting",
                ),
                source="test",
            ).to_fields()
            await redis_cluster_client.xadd("deliveries-stream", delivery)
            updates = await take(subscription, 2)
    finally:
        await hub.stop()
        await app.stop()
    assert {type(update) for update in updates} == {OrderUpdate, DeliveryUpdate}
    assert all(update.order_id == order_id for update in updates)


async def test_updates_of_an_order_and_its_delivery_arrive_in_order_on_a_cluster(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    """On a cluster the hub keeps one follower per stream and its reorder window: the
    updates, written one after the other to the two nodes, arrive in that order."""
    app = App("test-gateway-cluster-order", broker=redis_cluster.url, block_ms=200)
    hub = TrackingHub(app)
    assert hub.windowed  # one XREAD over both streams is impossible here
    hub.start()
    order_id = uuid.uuid4().hex
    written = alternating_updates(order_id, 20)
    try:
        assert await hub.wait_ready(GUARD)
        base = await future_ms(redis_cluster_client)
        with hub.subscribe(order_id) as subscription:
            for n, (stream, value) in enumerate(written):
                await publish(redis_cluster_client, stream, value, f"{base + n}-0")
            updates = await take(subscription, len(written))
    finally:
        await hub.stop()
        await app.stop()
    assert [u.at for u in updates] == [at_of(v) for _, v in written]
