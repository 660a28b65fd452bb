"""Semantic 7: an event id already processed by a group is not processed again."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Record
from orderflow.runtime.keys import stream_key
from orderflow.runtime.testing import eventually, run_app


class Payment(Record, event_type="rt.dedupe.payment.v1"):
    payment_id: str
    cents: int


def make_app(redis_url: str, **options) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.2, "scheduler_interval": 0.05}
    return App("rt-dedupe", broker=redis_url, **{**defaults, **options})


async def pending_zero(redis_client, stream: str, group: str) -> bool:
    return (await redis_client.xpending(stream, group))["pending"] == 0


async def test_a_republished_event_has_no_second_effect(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-payments", value_type=Payment)
    handled: list[str] = []

    @app.agent(topic, group="ledger", name="rt-dedupe-ledger")
    async def ledger(stream):
        async for value in stream:
            handled.append(value.payment_id)

    envelope = topic.envelope(Payment(payment_id="p-1", cents=500))
    async with run_app(app):
        # Twice in one batch (an outbox relay racing the request) ...
        pipe = redis_client.pipeline(transaction=False)
        pipe.xadd("rt-payments", envelope.to_fields())
        pipe.xadd("rt-payments", envelope.to_fields())
        await pipe.execute()
        await eventually(lambda: handled == ["p-1"])
        await eventually(lambda: pending_zero(redis_client, "rt-payments", "ledger"))
        # ... and again much later, after the mark is in Redis.
        await topic.send_envelope(envelope)
        await topic.send(value=Payment(payment_id="p-2", cents=1))
        await eventually(lambda: handled == ["p-1", "p-2"])
        await eventually(lambda: pending_zero(redis_client, "rt-payments", "ledger"))
    assert handled == ["p-1", "p-2"]
    skipped = REGISTRY.get_sample_value(
        "orderflow_events_skipped_total", {"agent": "rt-dedupe-ledger", "reason": "duplicate"}
    )
    assert skipped == 2


async def keys_like(client: Any, pattern: str) -> list[bytes]:
    """Keys matching ``pattern`` (``SCAN``: on every master under Cluster, where ``KEYS``
    would ask one node only)."""
    return sorted({key async for key in client.scan_iter(match=pattern)})


async def test_dedupe_memory_is_bucketed_with_a_bounded_ttl(redis_client, redis_url):
    app = make_app(redis_url, dedupe_ttl=600)
    topic = app.topic("rt-ttl", value_type=Payment)
    handled: list[str] = []

    @app.agent(topic, group="ttl-group")
    async def handle(stream):
        async for value in stream:
            handled.append(value.payment_id)

    async with run_app(app):
        await topic.send(value=Payment(payment_id="p", cents=1))
        await eventually(lambda: handled == ["p"])
        await eventually(lambda: keys_like(redis_client, "orderflow:{rt-ttl}:seen:ttl-group:*"))
    [key] = await keys_like(redis_client, "orderflow:{rt-ttl}:seen:ttl-group:*")
    ttl = await redis_client.ttl(key)
    assert 0 < ttl <= 2 * 600 + 60  # remembered for at least ttl, at most 2 * ttl
    assert await redis_client.scard(key) == 1


async def test_atomic_commits_the_effect_with_the_mark_so_a_redelivery_is_skipped(
    redis_client, redis_url
):
    app = make_app(redis_url)
    topic = app.topic("rt-atomic", value_type=Payment)
    balance_key = stream_key("rt-atomic", "balance")
    effect_done, release = asyncio.Event(), asyncio.Event()
    runs = 0

    @app.agent(topic, group="bank")
    async def bank(stream):
        nonlocal runs
        async for value in stream:
            runs += 1
            async with stream.current_event.atomic() as pipe:
                pipe.incrby(balance_key, value.cents)
            effect_done.set()
            await release.wait()

    envelope = topic.envelope(Payment(payment_id="p-9", cents=250))
    async with run_app(app):
        await topic.send_envelope(envelope)
        await asyncio.wait_for(effect_done.wait(), 10)
        # Effect and mark are in Redis although the entry is not acked yet.
        assert await redis_client.get(balance_key) == b"250"
        assert (await redis_client.xpending("rt-atomic", "bank"))["pending"] == 1
        [seen_key] = await keys_like(redis_client, "orderflow:{rt-atomic}:seen:bank:*")
        assert await redis_client.sismember(seen_key, envelope.event_id)
        release.set()
        # A copy arriving later (redelivery, outbox re-publish) changes nothing.
        copy_id = await redis_client.xadd("rt-atomic", envelope.to_fields())
        await eventually(lambda: _delivered(redis_client, "rt-atomic", "bank", copy_id))
        await eventually(lambda: pending_zero(redis_client, "rt-atomic", "bank"))
    assert runs == 1
    assert await redis_client.get(balance_key) == b"250"


async def _delivered(redis_client, stream: str, group: str, entry_id: bytes) -> bool:
    [info] = await redis_client.xinfo_groups(stream)
    return info["last-delivered-id"] == entry_id and info["name"] == group.encode()


def test_envelope_helper_keeps_the_event_id_for_republishing(redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-republish", value_type=Payment)
    envelope = topic.envelope(Payment(payment_id="x", cents=1))
    copy = Envelope.from_fields(envelope.to_fields())
    assert copy.event_id == envelope.event_id
