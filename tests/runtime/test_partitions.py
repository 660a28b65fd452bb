"""Partitioned topics (``app.topic(name, partitions=N)``): where events go, that an
agent consumes every partition once per event and per key in order (also with
``concurrency`` > 1 and two worker processes), delayed sends, dead-letter replay,
following, lag metrics and ``orderflow streams``; on a single node and, under
``ORDERFLOW_TEST_CLUSTER=1``, on the cluster (the last test always runs on one).
"""

from __future__ import annotations

import asyncio
import signal
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, PartitionedFollower, Record, deadletter, keys
from orderflow.runtime.inspect import inspect_streams
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.partitions import partition_of, partition_streams
from orderflow.runtime.testing import eventually, run_app
from tests.runtime.partition_app import GROUP, PARTITIONS, TOPIC, Step, log_key
from tests.runtime.worker_process import WorkerPool, wait_until


class Item(Record, event_type="partition.item.v1"):
    key: str
    seq: int


def test_partition_streams_and_the_key_hash_are_fixed_and_documented() -> None:
    assert partition_streams("orders", 1) == ("orders",)
    assert partition_streams("orders", 3) == ("orders.p0", "orders.p1", "orders.p2")
    with pytest.raises(ValueError):
        partition_streams("orders", 0)
    # crc32 of the UTF-8 key: the same in every process and Python version.
    assert zlib.crc32(b"order-1") == 0xE0B37FEF
    assert partition_of("order-1", 4) == 0xE0B37FEF % 4 == 3
    assert partition_of("ä", 7) == zlib.crc32("ä".encode()) % 7
    app = App("partition-unit", broker="redis://127.0.0.1:1/0")
    topic = app.topic("pt-unit", value_type=Item, partitions=4)
    assert topic.streams == tuple(f"pt-unit.p{i}" for i in range(4))
    keyed = topic.envelope(Item(key="k", seq=0), key="order-1")
    assert topic.stream_for(keyed) == "pt-unit.p3"
    keyless = topic.envelope(Item(key="k", seq=0))
    same = Envelope.from_fields(keyless.to_fields())  # a re-publish of the same event
    assert topic.stream_for(same) == topic.stream_for(keyless)
    assert topic.stream_for(keyless) == f"pt-unit.p{zlib.crc32(keyless.event_id.encode()) % 4}"
    plain = app.topic("pt-plain", value_type=Item)
    assert plain.streams == ("pt-plain",) and plain.stream_for(keyed) == "pt-plain"
    with pytest.raises(ValueError, match="partitions=4"):
        app.topic("pt-unit", value_type=Item, partitions=2)
    with pytest.raises(ValueError):
        app.topic("pt-zero", partitions=0)


async def test_keyed_events_spread_over_partitions_each_handled_once_in_key_order(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    app = App("partition-spread", broker=redis_url, block_ms=100)
    topic = app.topic("pt-spread", value_type=Item, partitions=4)
    handled: list[tuple[str, int, str]] = []

    @app.agent(topic, group="spread-group", concurrency=3, name="pt-spread-agent")
    async def handle(stream: Any) -> None:
        async for item in stream:
            await asyncio.sleep(0)  # let the other bodies run in between
            handled.append((item.key, item.seq, stream.current_event.stream))

    keys_sent = [f"order-{n}" for n in range(40)]
    async with run_app(app):
        assert [c.stream for c in handle.consumers] == list(topic.streams)
        for seq in range(10):
            for key in keys_sent:
                await topic.send(value=Item(key=key, seq=seq), key=key)
        await eventually(lambda: len(handled) >= 400, timeout=30)
        for stream in topic.streams:
            await eventually(lambda s=stream: nothing_pending(redis_client, s), timeout=30)
        await app.update_group_metrics()
        infos = {info.name for info in await inspect_streams(redis_client)}
    assert len(handled) == 400 and len(set(handled)) == 400  # each once
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, seq, stream in handled:
        per_key[key].append(seq)
        assert stream == topic.streams[partition_of(key, 4)]  # the key's partition
    assert all(seqs == list(range(10)) for seqs in per_key.values())  # in order
    lengths = [await redis_client.xlen(stream) for stream in topic.streams]
    assert sum(lengths) == 400 and all(lengths)  # every partition got some keys
    assert not await redis_client.exists("pt-spread")  # no stream of the bare name
    assert set(topic.streams) <= infos  # `orderflow streams` lists each partition
    for stream in topic.streams:  # lag and pending per partition
        labels = {"agent": "pt-spread-agent", "stream": stream, "group": "spread-group"}
        assert REGISTRY.get_sample_value("orderflow_consumer_pending", labels) == 0


async def test_one_body_reads_every_partition_when_concurrency_is_one(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    app = App("partition-one", broker=redis_url, block_ms=100)
    topic = app.topic("pt-one", value_type=Item, partitions=3)
    handled: list[tuple[str, int]] = []
    inside = 0
    most_inside = 0

    @app.agent(topic, group="one-group")
    async def handle(stream: Any) -> None:
        nonlocal inside, most_inside
        async for item in stream:
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0)
            handled.append((item.key, item.seq))
            inside -= 1

    async with run_app(app):
        for seq in range(5):
            for n in range(12):
                await topic.send(value=Item(key=f"k{n}", seq=seq), key=f"k{n}")
        await eventually(lambda: len(handled) >= 60, timeout=30)
    assert sorted(handled) == sorted((f"k{n}", s) for n in range(12) for s in range(5))
    assert most_inside == 1  # concurrency=1: one event at a time across all partitions
    assert {await redis_client.xlen(s) > 0 for s in topic.streams} == {True}


async def test_publish_once_of_a_keyless_event_lands_once_on_one_partition(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    app = App("partition-once", broker=redis_url)
    topic = app.topic("pt-once", value_type=Item, partitions=3)
    envelope = topic.envelope(Item(key="x", seq=1))  # no key: placed by its event id
    try:
        first = await app.send_envelopes([(topic, envelope)], once=True)
        again = await app.send_envelopes([(topic, envelope)], once=True)
        also = await topic.send_envelope(envelope, once=True)
    finally:
        await app.stop()
    assert first[0] is not None and again == [None] and also is None
    lengths = [await redis_client.xlen(s) for s in topic.streams]
    assert sorted(lengths) == [0, 0, 1]
    assert lengths.index(1) == zlib.crc32(envelope.event_id.encode()) % 3


async def test_delayed_sends_wait_then_land_in_their_keys_partition(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    app = App("partition-delay", broker=redis_url, block_ms=100, scheduler_interval=0.05)
    topic = app.topic("pt-delay", value_type=Item, partitions=3)
    handled: list[tuple[str, str]] = []

    @app.agent(topic, group="delay-group")
    async def handle(stream: Any) -> None:
        async for item in stream:
            handled.append((item.key, stream.current_event.stream))

    async with run_app(app):
        for n in range(6):
            assert await topic.send(value=Item(key=f"d{n}", seq=0), key=f"d{n}", delay=0.3) is None
        parked = [await redis_client.zcard(keys.delayed_key(s)) for s in topic.streams]
        assert sum(parked) == 6
        await eventually(lambda: len(handled) >= 6, timeout=30)
    assert sorted(handled) == sorted((f"d{n}", topic.streams[partition_of(f"d{n}", 3)])
                                     for n in range(6))  # fmt: skip
    assert [await redis_client.zcard(keys.delayed_key(s)) for s in topic.streams] == [0, 0, 0]


async def test_dead_letter_replay_goes_back_to_the_partition_it_came_from(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    app = App("partition-dlq", broker=redis_url, block_ms=100, retry_base=0.01, retry_cap=0.02)
    topic = app.topic("pt-dlq", value_type=Item, partitions=3)
    fixed = False
    handled: list[str] = []

    @app.agent(topic, group="dlq-group", max_deliveries=2)
    async def handle(stream: Any) -> None:
        async for item in stream:
            if item.key == "poison" and not fixed:
                raise RuntimeError("not yet")
            handled.append(stream.current_event.stream)

    home = topic.streams[partition_of("poison", 3)]
    async with run_app(app):
        await topic.send(value=Item(key="poison", seq=0), key="poison")
        await eventually(lambda: deadletter.count_dead_letters(redis_client), timeout=30)
        [letter] = await deadletter.list_dead_letters(redis_client)
        assert letter.stream == home and letter.group == "dlq-group"
        fixed = True
        await deadletter.replay(redis_client, letter)
        await eventually(lambda: handled == [home], timeout=30)
    assert await redis_client.xlen(home) == 2  # the original and the replay
    assert sum([await redis_client.xlen(s) for s in topic.streams if s != home]) == 0


async def test_following_a_partitioned_topic_sees_every_partition_in_key_order(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    app = App("partition-follow", broker=redis_url, block_ms=100)
    topic = app.topic("pt-follow", value_type=Item, partitions=3)
    follower = app.follow(topic)
    assert isinstance(follower, PartitionedFollower)
    assert [f.stream for f in follower.followers] == list(topic.streams)
    seen: list[tuple[str, int]] = []

    async def collect() -> None:
        async for event in follower:
            seen.append((event.value.key, event.value.seq))

    task = asyncio.create_task(collect())
    try:
        assert await follower.wait_ready(30)
        for seq in range(20):
            for n in range(5):
                await topic.send(value=Item(key=f"f{n}", seq=seq), key=f"f{n}")
        await eventually(lambda: len(seen) >= 100, timeout=30)
    finally:
        await follower.aclose()
        await asyncio.wait_for(task, 30)
        await app.stop()
    assert len(seen) == 100
    for n in range(5):
        assert [seq for key, seq in seen if key == f"f{n}"] == list(range(20))
    assert {partition_of(f"f{n}", 3) for n in range(5)} != {0}  # spread, not one stream


@pytest.mark.slow
def test_two_worker_processes_share_the_partitions_each_event_once_key_order_per_worker(
    sync_redis: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    pool = WorkerPool(redis_url, tmp_path)
    streams = partition_streams(TOPIC, PARTITIONS)
    try:
        first = pool.start(app="tests.runtime.partition_app:app")
        second = pool.start(app="tests.runtime.partition_app:app")
        first.wait_ready(60)
        second.wait_ready(60)
        publisher = App("partition-publisher", broker=redis_url)
        topic = publisher.topic(TOPIC, value_type=Step, partitions=PARTITIONS)
        pipe = sync_redis.pipeline(transaction=False)
        for seq in range(50):
            for n in range(60):
                envelope = topic.envelope(Step(key=f"w{n}", seq=seq), key=f"w{n}")
                pipe.xadd(topic.stream_for(envelope), envelope.to_fields())  # type: ignore[arg-type]
        pipe.execute()
        wait_until(
            lambda: sum(int(sync_redis.llen(log_key(s))) for s in streams) >= 3000,
            timeout=120,
            what="3000 steps handled by the two workers",
        )
        banner = f"{TOPIC} -> {GROUP} (concurrency 4, {PARTITIONS} partitions)"
        assert banner in first.output()
        for child in (first, second):
            child.signal(signal.SIGTERM)
            assert child.wait(timeout=30) == 0
    finally:
        pool.close()
    handled: list[tuple[str, str, int, str]] = []
    for stream in streams:
        lines: list[bytes] = sync_redis.lrange(log_key(stream), 0, -1)  # type: ignore[assignment]
        for line in lines:
            consumer, key, step = line.decode().split("|")
            handled.append((consumer, key, int(step), stream))
    assert len(handled) == 3000
    assert len({(key, seq) for _, key, seq, _ in handled}) == 3000  # each step once
    assert all(stream == streams[partition_of(key, PARTITIONS)] for _, key, _, stream in handled)
    per_worker_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for consumer, key, seq, _ in handled:
        per_worker_key[(consumer, key)].append(seq)
    # Within one worker a key's steps were handled in order (the group's promise: order
    # within a consumer); both workers took part.
    assert all(seqs == sorted(seqs) for seqs in per_worker_key.values())
    assert len({consumer for consumer, _ in per_worker_key}) == 2
    assert all(int(sync_redis.xpending(s, GROUP)["pending"]) == 0 for s in streams)


async def test_partitions_live_on_different_masters_and_are_read_from_their_owners(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    app = App("partition-cluster", broker=redis_cluster.url, block_ms=100)
    topic = app.topic("rt-parts", value_type=Item, partitions=3)
    owners = {redis_cluster.master_of(redis_cluster_client.keyslot(s)).port for s in topic.streams}  # type: ignore[attr-defined]
    assert len(owners) == 3  # one partition per master
    handled: list[tuple[str, int]] = []

    @app.agent(topic, group="cluster-parts", concurrency=2, name="pt-cluster-agent")
    async def handle(stream: Any) -> None:
        async for item in stream:
            handled.append((item.key, item.seq))

    async with run_app(app):
        for seq in range(20):
            for n in range(15):
                await topic.send(value=Item(key=f"c{n}", seq=seq), key=f"c{n}")
        await eventually(lambda: len(handled) >= 300, timeout=30)
        for stream in topic.streams:
            await eventually(lambda s=stream: nothing_pending(redis_cluster_client, s), timeout=30)
    assert len(set(handled)) == len(handled) == 300
    for n in range(15):
        assert [seq for key, seq in handled if key == f"c{n}"] == list(range(20))
    # Each partition's consumer connected to its owner at once: no MOVED, no reconnect.
    assert (REGISTRY.get_sample_value("orderflow_reconnects_total",
                                      {"agent": "pt-cluster-agent"}) or 0.0) == 0.0  # fmt: skip


async def nothing_pending(client: aioredis.Redis, stream: str) -> bool:
    groups = await client.xinfo_groups(stream)
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0
