"""The notifications service on a Redis Cluster: the status document is written from two
streams, and its key lives in another slot than either stream's dedupe marks.

Before the merge left ``event.atomic()``, its MULTI held the status key and the
``{orders-stream}`` mark: ``CROSSSLOT`` on a cluster, so every status event failed
until it was dead-lettered. This runs on the session's private cluster in every
``make test`` run (not only under ``ORDERFLOW_TEST_CLUSTER=1``).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from orderflow.agents.notifications import create_notifications_app
from orderflow.agents.status_cache import read_latest_status, status_key
from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM
from orderflow.models.events import DeliveryStatusUpdated, OrderCreated, OrderStatusUpdated
from orderflow.runtime import App, keys
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.testing import eventually, run_app

ORDER = "0" * 31 + "7"
DELIVERY = "0" * 31 + "8"


async def test_status_merges_from_both_streams_on_a_cluster(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    marks = keys.seen_key(ORDERS_STREAM, "notifications-group", 0)
    slot_of = redis_cluster_client.keyslot  # type: ignore[attr-defined]
    assert slot_of(status_key(ORDER)) != slot_of(marks)  # the CROSSSLOT pair of the old MULTI

    app = create_notifications_app(broker=redis_cluster.url, ttl_seconds=600)
    publisher = App("cluster-publisher", broker=redis_cluster.url)
    orders = publisher.topic(ORDERS_STREAM)
    deliveries = publisher.topic(DELIVERIES_STREAM)
    await publisher.connect()
    try:
        async with run_app(app):
            created = OrderCreated(order_id=ORDER, lines=[], total=0, created_at="t1-created")
            await orders.send(value=created, key=ORDER)
            preparing = OrderStatusUpdated(
                order_id=ORDER, status="preparing", at="t3-preparing", previous="confirmed"
            )
            await orders.send(value=preparing, key=ORDER)
            on_the_way = DeliveryStatusUpdated(
                delivery_id=DELIVERY, order_id=ORDER, status="on_the_way", at="t5-on-the-way",
                previous="waiting",
            )  # fmt: skip
            await deliveries.send(value=on_the_way, key=ORDER)
            # A late repeat of an older status changes nothing (the merge is forward-only).
            await orders.send(value=created, key=ORDER)

            async def merged() -> bool:
                document = await read_latest_status(redis_cluster_client, ORDER)
                return document is not None and document.get("delivery") is not None

            await eventually(merged, timeout=30)
            await eventually(lambda: app_consumed_everything(redis_cluster_client), timeout=30)
    finally:
        await publisher.stop()
    document = await read_latest_status(redis_cluster_client, ORDER)
    assert document == {
        "order_id": ORDER,
        "status": "preparing",
        "at": "t3-preparing",
        "delivery": {"delivery_id": DELIVERY, "status": "on_the_way", "at": "t5-on-the-way"},
    }
    assert await redis_cluster_client.xlen(keys.DEAD_LETTERS) == 0


async def app_consumed_everything(client: aioredis.Redis) -> bool:
    """Every entry of both streams read and acked by the notifications group."""
    for stream, length in ((ORDERS_STREAM, 3), (DELIVERIES_STREAM, 1)):
        groups = await client.xinfo_groups(stream)
        if not groups or groups[0]["pending"] != 0 or groups[0]["entries-read"] != length:
            return False
    return True
