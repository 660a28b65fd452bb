"""``app.follow(topic)``: the group-less reader, against a real server.

What these tests prove:
* a follower sees only the entries added after its cursor was fixed (``start="0"``:
  the whole stream), typed, in order, as consumer-less events;
* two followers each see every entry, and no consumer group is created;
* it follows across a ``CLIENT KILL`` of its connection and across a server restart
  (AOF), without losing or repeating an entry;
* entries of types its topic does not accept are skipped silently, invalid ones are
  skipped with a warning;
* ``stop()`` and ``aclose()`` end the iteration at once, also during a long
  ``XREAD BLOCK``, and close its connection;
* with ``min_read_interval`` what arrives between two reads comes in one reply, and
  nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.runtime import App, Envelope, Event, Follower, Record, TopicFollower
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.pytest_plugin import on_server_of
from orderflow.runtime.testing import eventually

GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


class Tick(Record, event_type="rt.follow.tick.v1"):
    n: int


class Tock(Record, event_type="rt.follow.tock.v1"):
    n: int


class Collector:
    """Iterates a follower in a task of its own, as the gateway does."""

    def __init__(self, app: App, follower: TopicFollower[Tick]) -> None:
        self.app = app
        self.follower = follower
        self.events: list[Event[Tick]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.follower:
            self.events.append(event)

    @property
    def values(self) -> list[int]:
        return [event.value.n for event in self.events]

    async def send(self, numbers: range) -> list[str | None]:
        topic = self.app.topic(self.follower.stream, value_type=Tick)
        return [await topic.send(value=Tick(n=n)) for n in numbers]


@asynccontextmanager
async def following(
    url: str, stream: str, *, start: str = "$", **options: Any
) -> AsyncIterator[Collector]:
    """An app of its own following ``stream`` (ready when entered); all closed on exit."""
    app = App("rt-follow", broker=url, **{"block_ms": 200, **options})
    collector = Collector(app, app.follow(app.topic(stream, value_type=Tick), start=start))
    try:
        assert await collector.follower.wait_ready(GUARD)
        yield collector
    finally:
        await collector.follower.aclose()
        await asyncio.wait_for(collector.task, GUARD)
        await app.stop()


async def xread_clients(client: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    """Connections blocked in XREAD on the server holding ``stream``."""
    listed = await client.client_list(**on_server_of(client, stream))
    return [c for c in listed if c.get("cmd") == "xread"]


async def test_a_follower_sees_only_what_comes_after_it_started(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    stream = "rt-follow-after"
    async with following(redis_url, stream, start="0") as whole:
        await whole.send(range(3))
        async with following(redis_url, stream) as new:
            ids = await new.send(range(100, 105))
            await eventually(lambda: len(new.values) >= 5 and len(whole.values) >= 8)
            ids += await new.send(range(105, 106))  # nothing else came before it
            await eventually(lambda: len(new.values) >= 6 and len(whole.values) >= 9)
    assert new.values == list(range(100, 106))
    assert whole.values == [0, 1, 2, *range(100, 106)]
    assert [event.message_id for event in new.events] == ids
    first = new.events[0]
    assert isinstance(first.value, Tick)
    assert (first.stream, first.group, first.delivery_count) == ("", "", 1)
    with pytest.raises(RuntimeError):
        async with first.atomic():
            pass


async def test_two_followers_each_see_every_entry(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    stream = "rt-follow-both"
    async with (
        following(redis_url, stream, read_count=20) as a,
        following(redis_url, stream, read_count=7) as b,
    ):
        await a.send(range(250))
        await eventually(lambda: len(a.values) >= 250 and len(b.values) >= 250)
    assert a.values == b.values == list(range(250))
    assert await redis_client.xinfo_groups(stream) == []  # no group, nothing to ack


async def test_a_killed_connection_loses_nothing(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    async with following(redis_url, "rt-follow-kill") as follow:
        await follow.send(range(10))
        await eventually(lambda: len(follow.values) == 10)
        (reader,) = await eventually(lambda: xread_clients(redis_client, "rt-follow-kill"))
        await redis_client.client_kill_filter(
            _id=reader["id"], **on_server_of(redis_client, "rt-follow-kill")
        )
        await follow.send(range(10, 20))  # while it is away
        await eventually(lambda: len(follow.values) >= 20)
        await follow.send(range(20, 21))
        await eventually(lambda: len(follow.values) >= 21)
    assert follow.values == list(range(21))
    assert follow.follower.reconnects >= 1


async def test_a_server_restart_loses_nothing(fresh_server: LocalRedisServer) -> None:
    async with following(fresh_server.url, "rt-follow-restart") as follow:
        await follow.send(range(30))
        await eventually(lambda: len(follow.values) == 30)
        await asyncio.to_thread(fresh_server.restart)  # AOF: the stream survives
        await follow.app.redis.connection_pool.disconnect()  # the sender's sockets died
        await follow.send(range(30, 60))
        await eventually(lambda: len(follow.values) >= 60, timeout=GUARD)
        await follow.send(range(60, 61))
        await eventually(lambda: len(follow.values) >= 61)
    assert follow.values == list(range(61))
    assert follow.follower.reconnects >= 1


async def test_other_types_are_skipped_and_invalid_entries_logged(
    redis_client: aioredis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = "rt-follow-skip"
    async with following(redis_url, stream) as follow:
        with caplog.at_level(logging.WARNING, logger="orderflow.follow"):
            await redis_client.xadd(stream, {"hello": "not an envelope"})
            broken: Any = Envelope.new(Tick(n=-1), source="t").to_fields()
            broken["payload"] = "{not json"
            await redis_client.xadd(stream, broken)
            other: Any = Envelope.new(Tock(n=-2), source="t").to_fields()
            await redis_client.xadd(stream, other)  # a type this topic does not accept
            await redis_client.xadd(stream, {**other, "event_type": "rt.follow.nobody.v1"})
            await follow.send(range(1, 2))
            await eventually(lambda: len(follow.values) >= 1)
    assert follow.values == [1]
    warnings = [r.getMessage() for r in caplog.records if "skipped invalid" in r.getMessage()]
    assert len(warnings) == 2, warnings  # the two broken ones; the others silently


async def test_stop_and_aclose_end_the_iteration_during_a_long_read(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    async with following(redis_url, "rt-follow-stop", block_ms=30_000) as stopped:
        topic = stopped.app.topic("rt-follow-stop", value_type=Tick)
        closed = Collector(stopped.app, stopped.app.follow(topic))  # a second, same app
        assert await closed.follower.wait_ready(GUARD)
        await eventually(lambda: _count(xread_clients(redis_client, "rt-follow-stop"), 2))
        began = time.monotonic()
        stopped.follower.stop()
        await asyncio.wait_for(stopped.task, GUARD)
        await closed.follower.aclose()
        await asyncio.wait_for(closed.task, GUARD)
        assert time.monotonic() - began < 5.0  # not the 30 s block
        await eventually(lambda: _count(xread_clients(redis_client, "rt-follow-stop"), 0))
        never = stopped.app.follow(topic)
        never.stop()
        assert [event async for event in never] == []


async def _count(clients: Any, expected: int) -> bool:
    return len(await clients) == expected


async def test_a_paced_follower_gets_what_arrived_between_reads_in_one_reply(
    redis_url: str,
) -> None:
    stream = "rt-follow-paced"
    app = App("rt-follow", broker=redis_url, block_ms=200)
    follower = app.follow(app.topic(stream, value_type=Tick), min_read_interval=3.0)
    assert isinstance(follower, Follower)  # one partition: one reader, one read count
    collector = Collector(app, follower)
    try:
        assert await follower.wait_ready(GUARD)
        await collector.send(range(1))
        await eventually(lambda: len(collector.values) >= 1)
        reads_before = follower.reads
        await collector.send(range(1, 31))  # sent while the follower waits out its interval
        await eventually(lambda: len(collector.values) >= 31)
    finally:
        await follower.aclose()
        await asyncio.wait_for(collector.task, GUARD)
        await app.stop()
    assert collector.values == list(range(31))  # nothing skipped
    assert follower.reads - reads_before <= 2  # not one read per entry
