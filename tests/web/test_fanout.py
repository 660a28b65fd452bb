"""The per-process fan-out (``orderflow.web.fanout.TrackingHub``) against a real server.

The hub follows the streams with ``app.follow`` (the runtime's group-less reader, whose
own tests are in ``tests/runtime/test_follow.py``); these tests are about what the
gateway builds on it.

What these tests prove:
* every entry of a burst larger than one XREAD batch reaches the subscribers,
  in stream order, and only the subscribers of that order;
* entries written together to both streams are handed out in entry-time order,
  whichever follower wakes up first;
* on one server the hub reads both streams with one ordered reader and hands updates
  out without a window; updates of an order and its delivery written one after the
  other arrive in exactly that order (on a cluster: windowed, same sequence);
* with partitioned topics every update of every partition arrives;
* entries that are not tracking events, or not decodable, are skipped without
  stopping the loop;
* after the Redis server restarts, the followers reconnect and resume from their
  cursors: an update published after the restart still arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.agents.settings import Settings
from orderflow.models.documents import utc_now
from orderflow.models.events import DeliveryStatusUpdated, OrderSimulate, OrderStatusUpdated
from orderflow.runtime import App
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.partitions import partition_of
from orderflow.runtime.pytest_plugin import cluster_mode
from orderflow.runtime.records import Record
from orderflow.web.fanout import (
    TRACKED_STREAMS,
    DeliveryUpdate,
    OrderUpdate,
    Subscription,
    TrackingHub,
    Update,
)

GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


async def publish(redis: aioredis.Redis, stream: str, value: Record, entry_id: str = "*") -> None:
    fields: Any = Envelope.new(value, source="test-fanout").to_fields()
    await redis.xadd(stream, fields, id=entry_id)


async def future_ms(redis: aioredis.Redis) -> int:
    """A millisecond 1 s ahead of the server's clock: explicit ids from there on are
    one per millisecond, since ids of two streams are ordered by their time part only
    (within one millisecond nothing tells which of two streams' entries came first)."""
    return int((await redis.time())[0]) * 1000 + 1000


async def take(subscription: Subscription, count: int) -> list[Update]:
    updates: list[Update] = []
    while len(updates) < count:
        update = await asyncio.wait_for(subscription.get(), GUARD)
        assert update is not None, "subscription overflowed"
        updates.append(update)
    return updates


def gateway(url: str) -> App:
    """A follower-only App like the gateway's, with small reads (several per burst)."""
    return App("test-gateway", broker=url, read_count=50, block_ms=200)


@pytest.fixture
async def hub(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[TrackingHub]:
    running = TrackingHub(gateway(redis_url))
    running.start()
    assert await running.wait_ready(GUARD)
    try:
        yield running
    finally:
        await running.stop()
        await running.app.stop()


async def test_burst_larger_than_a_batch_arrives_in_order_to_its_order_only(
    hub: TrackingHub, redis_client: aioredis.Redis
) -> None:
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    with hub.subscribe(mine) as subscription, hub.subscribe(other) as other_subscription:
        stamps = []
        for _ in range(120):  # > read_count: several XREAD batches
            at = utc_now()
            stamps.append(at)
            await publish(
                redis_client,
                "orders-stream",
                OrderStatusUpdated(order_id=mine, status="confirmed", at=at, previous="created"),
            )
        await publish(
            redis_client,
            "orders-stream",
            OrderStatusUpdated(
                order_id=other, status="preparing", at=utc_now(), previous="created"
            ),
        )
        updates = await take(subscription, 120)
        assert [u.at for u in updates] == stamps
        assert all(isinstance(u, OrderUpdate) and u.order_id == mine for u in updates)
        (only,) = await take(other_subscription, 1)
        assert isinstance(only, OrderUpdate) and only.status == "preparing"
        assert subscription.queue.empty()
    assert hub.subscription_count == 0


@pytest.mark.parametrize("older", ["deliveries-stream", "orders-stream"])
async def test_entries_written_together_to_both_streams_are_handed_out_in_time_order(
    hub: TrackingHub, redis_client: aioredis.Redis, older: str
) -> None:
    order_id, delivery_id = uuid.uuid4().hex, uuid.uuid4().hex
    now_ms = int((await redis_client.time())[0]) * 1000 + 1000
    with hub.subscribe(order_id) as subscription:
        # One transaction: both followers' blocked XREADs wake up at the same moment.
        # The order entry is written first, but the entry of `older` is 10 ms older;
        # which follower's reply is handled first is up to the event loop, so both
        # cases are checked (handed out as they arrive, one of the two would fail).
        async with redis_client.pipeline(transaction=True) as pipe:
            order_fields: Any = Envelope.new(
                OrderStatusUpdated(
                    order_id=order_id, status="delivered", at=utc_now(), previous="out_for_delivery"
                ),
                source="test",
            ).to_fields()
            delivery_fields: Any = Envelope.new(
                DeliveryStatusUpdated(
                    delivery_id=delivery_id,
                    order_id=order_id,
                    status="delivered",
                    at=utc_now(),
                    previous="on_the_way",
                ),
                source="test",
            ).to_fields()
            ms = {older: now_ms, **{s: now_ms + 10 for s in TRACKED_STREAMS if s != older}}
            pipe.xadd("orders-stream", order_fields, id=f"{ms['orders-stream']}-0")
            pipe.xadd("deliveries-stream", delivery_fields, id=f"{ms['deliveries-stream']}-0")
            await pipe.execute()
        first, second = await take(subscription, 2)
    expected = (DeliveryUpdate, OrderUpdate) if older == "deliveries-stream" else (
        OrderUpdate, DeliveryUpdate)  # fmt: skip
    assert (type(first), type(second)) == expected


def alternating_updates(order_id: str, count: int) -> list[tuple[str, Record]]:
    """``count`` updates of one order, alternately of the order and of its delivery."""
    delivery_id = uuid.uuid4().hex
    updates: list[tuple[str, Record]] = []
    for n in range(count):
        at = f"{utc_now()}#{n}"
        if n % 2:
            updates.append(("deliveries-stream", DeliveryStatusUpdated(
                delivery_id=delivery_id, order_id=order_id, status="on_the_way", at=at,
                previous="waiting")))  # fmt: skip
        else:
            updates.append(("orders-stream", OrderStatusUpdated(
                order_id=order_id, status="preparing", at=at, previous="confirmed")))  # fmt: skip
    return updates


def at_of(value: Record) -> str:
    assert isinstance(value, OrderStatusUpdated | DeliveryStatusUpdated)
    return value.at


async def test_updates_of_an_order_and_its_delivery_arrive_in_the_order_written(
    hub: TrackingHub, redis_client: aioredis.Redis
) -> None:
    assert hub.windowed is cluster_mode()  # one ordered reader unless on a cluster
    order_id = uuid.uuid4().hex
    written = alternating_updates(order_id, 40)
    base = await future_ms(redis_client)
    with hub.subscribe(order_id) as subscription:
        for n, (stream, value) in enumerate(written):  # one after the other
            await publish(redis_client, stream, value, f"{base + n}-0")
        updates = await take(subscription, len(written))
        assert subscription.queue.empty()
    assert [u.at for u in updates] == [at_of(v) for _, v in written]


async def test_with_partitions_every_update_arrives(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    partitions = 3
    app = App("test-gateway-p", broker=redis_url, block_ms=200,
              settings=Settings(redis_url=redis_url, topic_partitions=partitions))  # fmt: skip
    hub = TrackingHub(app)
    hub.start()
    order_ids = [uuid.uuid4().hex for _ in range(9)]
    while len({partition_of(i, partitions) for i in order_ids}) < partitions:
        order_ids.append(uuid.uuid4().hex)  # every partition gets at least one order
    try:
        assert await hub.wait_ready(GUARD)
        with contextlib.ExitStack() as subscribed:
            subscriptions = [subscribed.enter_context(hub.subscribe(i)) for i in order_ids]
            base = await future_ms(redis_client)
            for k, order_id in enumerate(order_ids):
                for n, (stream, value) in enumerate(alternating_updates(order_id, 4)):
                    partition = partition_of(order_id, partitions)
                    entry_id = f"{base + 4 * k + n}-0"
                    await publish(redis_client, f"{stream}.p{partition}", value, entry_id)
            received = [await take(subscription, 4) for subscription in subscriptions]
            assert all(subscription.queue.empty() for subscription in subscriptions)
    finally:
        await hub.stop()
        await app.stop()
    assert len({partition_of(i, partitions) for i in order_ids}) == partitions
    for order_id, updates in zip(order_ids, received, strict=True):
        assert [type(u) for u in updates] == [OrderUpdate, DeliveryUpdate] * 2
        assert all(u.order_id == order_id for u in updates)


async def test_foreign_and_broken_entries_are_skipped(
    hub: TrackingHub, redis_client: aioredis.Redis
) -> None:
    order_id, delivery_id = uuid.uuid4().hex, uuid.uuid4().hex
    with hub.subscribe(order_id) as subscription:
        await redis_client.xadd("orders-stream", {"hello": "not an envelope"})
        broken: Any = Envelope.new(
            OrderSimulate(order_id=order_id, status="confirmed"), source="test"
        ).to_fields()
        broken["payload"] = "{not json"
        await redis_client.xadd("orders-stream", broken)
        # A registered event that is not a tracking event: ignored.
        await publish(
            redis_client, "orders-stream", OrderSimulate(order_id=order_id, status="confirmed")
        )
        await publish(
            redis_client,
            "deliveries-stream",
            DeliveryStatusUpdated(
                delivery_id=delivery_id,
                order_id=order_id,
                status="on_the_way",
                at=utc_now(),
                previous="waiting",
            ),
        )
        (update,) = await take(subscription, 1)
    assert update == DeliveryUpdate(order_id, delivery_id, "on_the_way", update.at)


async def test_reader_resumes_after_a_server_restart(fresh_server: LocalRedisServer) -> None:
    client = aioredis.Redis.from_url(fresh_server.url)
    hub = TrackingHub(gateway(fresh_server.url))
    hub.start()
    order_id = uuid.uuid4().hex
    try:
        assert await hub.wait_ready(GUARD)
        with hub.subscribe(order_id) as subscription:
            await publish(
                client,
                "orders-stream",
                OrderStatusUpdated(
                    order_id=order_id, status="confirmed", at=utc_now(), previous="created"
                ),
            )
            (before,) = await take(subscription, 1)
            await asyncio.to_thread(fresh_server.restart)  # AOF: the stream survives
            await client.connection_pool.disconnect()  # the publisher's sockets died with it
            await publish(
                client,
                "orders-stream",
                OrderStatusUpdated(
                    order_id=order_id, status="preparing", at=utc_now(), previous="confirmed"
                ),
            )
            (after,) = await take(subscription, 1)
    finally:
        await hub.stop()
        await hub.app.stop()
        await client.aclose()
    assert isinstance(before, OrderUpdate) and before.status == "confirmed"
    assert isinstance(after, OrderUpdate) and after.status == "preparing"
