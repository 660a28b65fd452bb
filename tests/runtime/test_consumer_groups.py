"""Semantics 1 and 2: groups, consumer names, pending drain at start, XAUTOCLAIM."""

from __future__ import annotations

import os
import socket

from orderflow.runtime import App, Envelope, Record
from orderflow.runtime.app import default_consumer_name
from orderflow.runtime.testing import eventually, run_app


class Job(Record, event_type="rt.groups.job.v1"):
    n: int


def make_app(redis_url: str, **options) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.1, "scheduler_interval": 0.05}
    return App("rt-groups", broker=redis_url, **{**defaults, **options})


async def add_jobs(redis_client, stream: str, count: int, start: int = 0) -> list[bytes]:
    ids = []
    for n in range(start, start + count):
        fields = Envelope.new(Job(n=n), source="tests").to_fields()
        ids.append(await redis_client.xadd(stream, fields))
    return ids


def test_consumer_name_is_host_and_pid_unless_given(redis_url):
    assert default_consumer_name() == f"{socket.gethostname()}-{os.getpid()}"
    assert App("x", broker=redis_url).consumer_name == default_consumer_name()
    assert App("x", broker=redis_url, consumer_name="worker-7").consumer_name == "worker-7"


async def test_group_is_created_with_mkstream_and_creation_is_idempotent(redis_client, redis_url):
    first, second = make_app(redis_url), make_app(redis_url, consumer_name="other")
    for app in (first, second):

        @app.agent(app.topic("rt-new-stream", value_type=Job), group="g1")
        async def handle(stream):
            async for _ in stream:
                pass

    async with run_app(first), run_app(second):
        assert await redis_client.exists("rt-new-stream") == 1
        groups = await redis_client.xinfo_groups("rt-new-stream")
        assert [g["name"] for g in groups] == [b"g1"]


async def test_group_is_recreated_after_the_server_lost_its_data(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-flushed", value_type=Job)
    seen: list[int] = []

    @app.agent(topic, group="survivor")
    async def handle(stream):
        async for value in stream:
            seen.append(value.n)

    async with run_app(app):
        await topic.send(value=Job(n=1))
        await eventually(lambda: seen == [1])
        await redis_client.flushall()  # the server "lost its data": stream and group gone
        await topic.send(value=Job(n=2))
        await eventually(lambda: seen == [1, 2], timeout=15)
        groups = await redis_client.xinfo_groups("rt-flushed")
        assert [g["name"] for g in groups] == [b"survivor"]


async def test_own_pending_entries_are_drained_first_at_start(redis_client, redis_url):
    await redis_client.xgroup_create("rt-drain", "drain-group", id="0", mkstream=True)
    ids = await add_jobs(redis_client, "rt-drain", 3)
    # Delivered to "me" in an earlier life, never acked.
    await redis_client.xreadgroup("drain-group", "me", {"rt-drain": ">"}, count=10)
    await add_jobs(redis_client, "rt-drain", 2, start=3)  # new ones, never delivered
    app = make_app(redis_url, consumer_name="me")
    order: list[tuple[int, int]] = []

    @app.agent(app.topic("rt-drain", value_type=Job), group="drain-group")
    async def handle(stream):
        async for event in stream.events():
            order.append((event.value.n, event.delivery_count))

    async with run_app(app):
        await eventually(lambda: len(order) == 5)
        await eventually(lambda: _pending(redis_client, "rt-drain", "drain-group", 0))
    # Pending first (Redis counts the re-delivery), then the new entries.
    assert order == [(0, 2), (1, 2), (2, 2), (3, 1), (4, 1)]
    assert len(ids) == 3


async def _pending(redis_client, stream: str, group: str, expected: int) -> bool:
    return (await redis_client.xpending(stream, group))["pending"] == expected


async def test_entries_of_a_dead_consumer_are_reclaimed_following_the_cursor(
    redis_client, redis_url
):
    await redis_client.xgroup_create("rt-claim", "claim-group", id="0", mkstream=True)
    await add_jobs(redis_client, "rt-claim", 25)
    await redis_client.xreadgroup("claim-group", "dead", {"rt-claim": ">"}, count=100)
    # More than one XAUTOCLAIM page (COUNT = read_count = 10): the cursor must be followed.
    app = make_app(redis_url, consumer_name="alive", claim_idle_ms=50, read_count=10)
    counts: dict[int, int] = {}

    @app.agent(app.topic("rt-claim", value_type=Job), group="claim-group")
    async def handle(stream):
        async for event in stream.events():
            counts[event.value.n] = event.delivery_count

    async with run_app(app):
        await eventually(lambda: len(counts) == 25)
        await eventually(lambda: _pending(redis_client, "rt-claim", "claim-group", 0))
    assert sorted(counts) == list(range(25))
    assert set(counts.values()) == {2}  # the dead consumer's delivery + ours


async def test_pending_entries_trimmed_away_are_acked_not_fatal(redis_client, redis_url):
    await redis_client.xgroup_create("rt-trimmed", "trim-group", id="0", mkstream=True)
    ids = await add_jobs(redis_client, "rt-trimmed", 3)
    await redis_client.xreadgroup("trim-group", "me", {"rt-trimmed": ">"}, count=10)
    await redis_client.xdel("rt-trimmed", ids[0])  # e.g. MAXLEN trimmed it while pending
    app = make_app(redis_url, consumer_name="me")
    seen: list[int] = []

    @app.agent(app.topic("rt-trimmed", value_type=Job), group="trim-group")
    async def handle(stream):
        async for value in stream:
            seen.append(value.n)

    async with run_app(app):
        await eventually(lambda: seen == [1, 2])
        await eventually(lambda: _pending(redis_client, "rt-trimmed", "trim-group", 0))
