"""The ordering system with its per-order topics partitioned (``ORDERFLOW_TOPIC_PARTITIONS=3``),
on the session's server and on the session's private cluster (every run; under
``ORDERFLOW_TEST_CLUSTER=1`` both are the cluster, so the second is skipped).

Orders are placed until their ids cover every partition, then each must reach
``delivered`` with every event of it in its own partition (``crc32(order_id) % 3``) of
each per-order topic, announced once and in order; every group of every partition ends
with nothing pending; the gateway's fan-out follows every partition; ``orderflow streams
orders-stream`` lists the partitions and a dead letter of a partition is found by the
topic's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from orderflow.agents.placement import place_order
from orderflow.agents.settings import get_settings
from orderflow.agents.status_cache import read_latest_status
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    NOTIFICATIONS_GROUP,
    ORDERS_STREAM,
    PARTITIONED_STREAMS,
)
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.runtime import App, Envelope, deadletter
from orderflow.runtime.inspect import inspect_streams
from orderflow.runtime.partitions import partition_of, partition_streams
from orderflow.runtime.pytest_plugin import cluster_mode, flushed_client
from orderflow.runtime.testing import eventually
from orderflow.web.fanout import DeliveryUpdate, OrderUpdate, TrackingHub
from tests.system.conftest import all_consumed, envelopes_for_order, stream_envelopes
from tests.system.test_lifecycle import DELIVERY_LIFECYCLE, ORDER_LIFECYCLE, wait_delivered

PARTITIONS = 3
MAX_ORDERS = 30  # 3 partitions all hit within 30 random ids but with odds of 1.6e-5


@pytest.fixture(autouse=True)
def three_partitions() -> Iterator[None]:
    """Every app and helper of the test reads ORDERFLOW_TOPIC_PARTITIONS=3 (set first)."""
    os.environ["ORDERFLOW_TOPIC_PARTITIONS"] = str(PARTITIONS)
    get_settings.cache_clear()
    try:
        yield
    finally:
        del os.environ["ORDERFLOW_TOPIC_PARTITIONS"]
        get_settings.cache_clear()


@pytest.fixture(params=["server", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The session's server, then the session's private cluster."""
    if request.param == "cluster" and cluster_mode():
        pytest.skip("ORDERFLOW_TEST_CLUSTER=1: the session's server is this cluster already")
    fixture = "redis_server" if request.param == "server" else "redis_cluster"
    url: str = request.getfixturevalue(fixture).url
    return url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    async with flushed_client(redis_url) as client:
        yield client


async def place_until_every_partition(store: Store, publisher: App) -> list[str]:
    """Place orders until their ids cover every partition; returns their ids."""
    order_ids: list[str] = []
    while len({partition_of(i, PARTITIONS) for i in order_ids}) < PARTITIONS:
        assert len(order_ids) < MAX_ORDERS
        line = OrderLineRequest(item_id="diavola", quantity=1)
        order_ids.append((await place_order(store, publisher, [line])).order.id)
    return order_ids


@pytest.mark.timeout(240)
async def test_orders_reach_delivered_with_each_order_in_its_partition(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App, redis_url: str
) -> None:
    order_ids = await place_until_every_partition(store, publisher)
    for order_id in order_ids:
        await wait_delivered(store, order_id)
    await eventually(lambda: all_consumed(redis_client), timeout=60)

    for stream in PARTITIONED_STREAMS:
        assert not await redis_client.exists(stream)  # no plain stream: only its partitions
    for order_id in order_ids:
        home = partition_of(order_id, PARTITIONS)
        for stream in PARTITIONED_STREAMS:
            for index, name in enumerate(partition_streams(stream, PARTITIONS)):
                entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis_client.xrange(name)  # type: ignore[assignment]
                envelopes = [Envelope.from_fields(fields) for _, fields in entries]
                mine = [e for e in envelopes if e.payload.get("order_id") == order_id]
                if index != home:
                    assert mine == [], (stream, index, home)
                else:
                    assert mine and {e.key for e in mine} == {order_id}, stream
        updates = await envelopes_for_order(
            redis_client, ORDERS_STREAM, order_id, "order.status_updated.v1"
        )
        assert [u.payload["status"] for u in updates] == ORDER_LIFECYCLE[1:]
        deliveries = await envelopes_for_order(redis_client, DELIVERIES_STREAM, order_id)
        assert [d.payload["status"] for d in deliveries] == DELIVERY_LIFECYCLE
        cached = await read_latest_status(redis_client, order_id)
        assert cached is not None and cached["status"] == "delivered"
        assert cached["delivery"]["status"] == "delivered"

    # Every partition of orders-stream was read by its three groups, to the end.
    infos = await inspect_streams(redis_client, [ORDERS_STREAM])
    assert [info.name for info in infos] == list(partition_streams(ORDERS_STREAM, PARTITIONS))
    for info in infos:
        assert info.length > 0
        assert {g.name for g in info.groups} == {
            "delivery-group",
            "notifications-group",
            "simulator-group",
        }
        assert all(g.pending == 0 for g in info.groups)

    # `orderflow streams orders-stream` names the topic and lists its partitions.
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orderflow.agents.cli", "streams", "--redis-url", redis_url,
         "--json", ORDERS_STREAM],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [row["name"] for row in json.loads(listed.stdout)] == [i.name for i in infos]


async def test_a_malformed_entry_on_a_partition_is_dead_lettered_and_found_by_topic(
    services: list[App], redis_client: aioredis.Redis
) -> None:
    partition = partition_streams(ORDERS_STREAM, PARTITIONS)[1]
    await redis_client.xadd(partition, {"garbage": "not an envelope"})

    async def one_per_group() -> bool:  # the three groups that read orders-stream
        return len(await deadletter.list_dead_letters(redis_client, stream=ORDERS_STREAM)) >= 3

    await eventually(one_per_group, timeout=60)
    found = await deadletter.list_dead_letters(redis_client, stream=ORDERS_STREAM)
    assert {letter.stream for letter in found} == {partition}
    assert {letter.group for letter in found} == {
        "delivery-group",
        NOTIFICATIONS_GROUP,
        "simulator-group",
    }
    assert all(letter.error_message for letter in found)  # the reason is kept
    assert await deadletter.list_dead_letters(redis_client, stream=DELIVERIES_STREAM) == []


@pytest.mark.timeout(240)
async def test_the_gateway_fan_out_follows_every_partition(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App, redis_url: str
) -> None:
    hub = TrackingHub(App("test-gateway", broker=redis_url))
    hub.start()
    try:
        assert await hub.wait_ready(60)
        seen: dict[str, list[OrderUpdate | DeliveryUpdate]] = {}
        subscriptions = []
        order_ids: list[str] = []
        with contextlib.ExitStack() as stack:
            while len({partition_of(i, PARTITIONS) for i in order_ids}) < PARTITIONS:
                assert len(order_ids) < MAX_ORDERS
                line = OrderLineRequest(item_id="diavola", quantity=1)
                order_id = (await place_order(store, publisher, [line])).order.id
                subscriptions.append(stack.enter_context(hub.subscribe(order_id)))
                order_ids.append(order_id)

            async def everyone_delivered() -> bool:
                for subscription in subscriptions:
                    updates = seen.setdefault(subscription.order_id, [])
                    updates.extend(u for u in subscription.drain() if u is not None)
                return all(
                    {("order", "delivered"), ("delivery", "delivered")} <= _kinds(updates)
                    for updates in seen.values()
                ) and len(seen) == len(order_ids)

            await eventually(everyone_delivered, timeout=60)
        for order_id, updates in seen.items():
            assert {u.order_id for u in updates} == {order_id}
            order_statuses = [u.status for u in updates if isinstance(u, OrderUpdate)]
            assert order_statuses == sorted(order_statuses, key=ORDER_LIFECYCLE.index)
    finally:
        await hub.stop()
    assert {partition_of(i, PARTITIONS) for i in order_ids} == set(range(PARTITIONS))
    assert len(await stream_envelopes(redis_client, ORDERS_STREAM)) >= 5 * len(order_ids)


def _kinds(updates: list[OrderUpdate | DeliveryUpdate]) -> set[tuple[str, str]]:
    return {("order" if isinstance(u, OrderUpdate) else "delivery", u.status) for u in updates}
