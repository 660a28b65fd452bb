"""``app.follow_many(topics)``: one ordered reader of several streams, against a real server.

What these tests prove:
* entries of two topics come out in entry-time order across the topics, every one once,
  also when one stream fills a read's ``COUNT`` while the other has later entries (the
  cut keeps those for the next read instead of handing them out too early);
* every partition of a partitioned topic is read in the same ``XREAD``;
* entries of types a topic does not accept are skipped, each stream decoded with its
  own topic's types;
* it refuses a Redis Cluster app (the streams would be on different slots);
* ``stop()`` ends the iteration during a long ``XREAD BLOCK``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.runtime import App, Envelope, Event, MultiFollower, Record
from orderflow.runtime.follow_multi import in_append_order
from orderflow.runtime.pytest_plugin import cluster_mode

GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


class Ping(Record, event_type="rt.multi.ping.v1"):
    n: int


class Pong(Record, event_type="rt.multi.pong.v1"):
    n: int


class Collector:
    """Iterates a follower in a task of its own, as the gateway does."""

    def __init__(self, follower: MultiFollower) -> None:
        self.follower = follower
        self.events: list[Event[Any]] = []
        self.task = asyncio.create_task(self._run())

        self.arrived = asyncio.Event()

    async def _run(self) -> None:
        async for event in self.follower:
            self.events.append(event)
            self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(GUARD):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def following(app: App, *streams: tuple[str, type[Record], int]) -> AsyncIterator[Collector]:
    """``app.follow_many`` over ``(name, type, partitions)`` topics (ready when entered)."""
    topics = [app.topic(name, value_type=kind, partitions=p) for name, kind, p in streams]
    collector = Collector(app.follow_many(topics))
    try:
        assert await collector.follower.wait_ready(GUARD)
        yield collector
    finally:
        await collector.follower.aclose()
        await asyncio.wait_for(collector.task, GUARD)
        await app.stop()


async def xadd(client: aioredis.Redis, stream: str, value: Record, entry_id: str) -> None:
    fields: Any = Envelope.new(value, source="test").to_fields()
    await client.xadd(stream, fields, id=entry_id)


SINGLE_SERVER = pytest.mark.skipif(
    cluster_mode(),
    reason="follow_many is one XREAD over every stream: a single Redis server only (on a "
    "cluster app.follow_many raises ValueError, tested without a server below)",
)


@SINGLE_SERVER
async def test_two_streams_come_out_in_entry_time_order_across_a_full_count(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    base = int((await redis_client.time())[0]) * 1000 + 1000
    app = App("rt-multi", broker=redis_url, block_ms=200, read_count=50)
    async with following(app, ("multi-a", Ping, 1), ("multi-b", Pong, 1)) as collector:
        # Written in one transaction, so the first XREAD sees them all: 120 pings at
        # base+0..119 ms (more than COUNT=50) and 6 pongs spread over the same span.
        async with redis_client.pipeline(transaction=True) as pipe:
            for n in range(120):
                pipe.xadd("multi-a", Envelope.new(Ping(n=n), source="t").to_fields(),  # type: ignore[arg-type]
                          id=f"{base + n}-0")  # fmt: skip
            for n in (5, 30, 49, 50, 77, 119):
                pipe.xadd("multi-b", Envelope.new(Pong(n=n), source="t").to_fields(),  # type: ignore[arg-type]
                          id=f"{base + n}-1")  # fmt: skip
            await pipe.execute()
        await collector.wait_for(126)
    times = [(int(e.entry_id.split(b"-")[0]), isinstance(e.value, Pong)) for e in collector.events]
    assert len(collector.events) == 126
    assert times == sorted(times)  # entry time order; a ping before the pong of its ms
    assert [e.value.n for e in collector.events if isinstance(e.value, Ping)] == list(range(120))
    assert [e.value.n for e in collector.events if isinstance(e.value, Pong)] == [
        5, 30, 49, 50, 77, 119]  # fmt: skip


@SINGLE_SERVER
async def test_every_partition_is_read_and_foreign_types_skipped(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    base = int((await redis_client.time())[0]) * 1000 + 1000
    app = App("rt-multi-p", broker=redis_url, block_ms=200)
    async with following(app, ("multi-p", Ping, 3), ("multi-q", Pong, 1)) as collector:
        assert collector.follower.streams == ("multi-p.p0", "multi-p.p1", "multi-p.p2", "multi-q")
        for n in range(9):
            await xadd(redis_client, f"multi-p.p{n % 3}", Ping(n=n), f"{base + 2 * n}-0")
            await xadd(redis_client, "multi-q", Pong(n=n), f"{base + 2 * n + 1}-0")
            await xadd(redis_client, "multi-q", Ping(n=100 + n), f"{base + 2 * n + 1}-1")
        await collector.wait_for(18)
        await asyncio.sleep(0.3)  # a read's worth: nothing else may come
    values = [(type(e.value).__name__, e.value.n) for e in collector.events]
    assert values == [(kind, n) for n in range(9) for kind in ("Ping", "Pong")]


@SINGLE_SERVER
async def test_stop_ends_a_long_read(redis_url: str) -> None:
    app = App("rt-multi-stop", broker=redis_url, block_ms=60_000)
    async with following(app, ("multi-s", Ping, 1), ("multi-t", Pong, 1)) as collector:
        await asyncio.sleep(0.1)  # blocked in XREAD now
        collector.follower.stop()
        await asyncio.wait_for(collector.task, GUARD)
        assert collector.follower.reads >= 1 and collector.events == []


def test_a_cluster_app_is_refused() -> None:
    cluster = App("rt-multi-cluster", broker="redis+cluster://127.0.0.1:1")
    with pytest.raises(ValueError, match="Cluster"):
        cluster.follow_many([cluster.topic("multi-s", value_type=Ping)])


def test_the_cut_keeps_what_comes_after_a_full_stream() -> None:
    a: list[Any] = [(f"{ms}-0".encode(), []) for ms in (1, 2, 3)]
    b: list[Any] = [(f"{ms}-0".encode(), []) for ms in (2, 5)]
    entries, cursors = in_append_order([(b"a", a), (b"b", b)], count=3)
    assert [(s, e[0]) for s, e in entries] == [
        (b"a", b"1-0"), (b"a", b"2-0"), (b"b", b"2-0"), (b"a", b"3-0")]  # fmt: skip
    assert cursors == {b"a": b"3-0", b"b": b"2-0"}  # 5-0 is read again next time
    entries, cursors = in_append_order([(b"a", a), (b"b", b)], count=4)
    assert [e[0] for _, e in entries] == [b"1-0", b"2-0", b"2-0", b"3-0", b"5-0"]
