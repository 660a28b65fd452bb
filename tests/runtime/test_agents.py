"""The Faust-shaped surface: agents, value types, take(), events(), concurrency, timers."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from orderflow.runtime import App, Record
from orderflow.runtime.testing import eventually, run_app


class Tick(Record, event_type="rt.agents.tick.v1"):
    n: int


class Tock(Record, event_type="rt.agents.tock.v1"):
    n: int


class Keyed(Record, event_type="rt.agents.keyed.v1"):
    key: str
    seq: int


def make_app(redis_url: str, **options) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.5, "scheduler_interval": 0.02}
    return App("rt-agents", broker=redis_url, **{**defaults, **options})


async def test_agent_gets_typed_values_in_order_and_acks_them(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-ticks", value_type=Tick)
    seen: list[int] = []

    @app.agent(topic, group="tick-group")
    async def handle(stream):
        async for value in stream:
            assert isinstance(value, Tick)
            seen.append(value.n)

    async with run_app(app):
        for n in range(250):
            await topic.send(value=Tick(n=n))
        await eventually(lambda: len(seen) == 250)
    assert seen == list(range(250))
    groups = await redis_client.xinfo_groups("rt-ticks")
    assert groups[0]["pending"] == 0


async def test_typed_topic_skips_and_acks_event_types_it_does_not_take(redis_client, redis_url):
    app = make_app(redis_url)
    ticks_only = app.topic("rt-mixed", value_type=Tick)
    got: list[str] = []

    @app.agent(ticks_only, group="only-ticks", name="rt-only-ticks")
    async def only_ticks(stream):
        async for value in stream:
            got.append(type(value).__name__)

    sender = App("rt-sender", broker=redis_url)
    mixed = sender.topic("rt-mixed")  # untyped: any record
    async with run_app(app):
        await mixed.send(value=Tock(n=1))
        await mixed.send(value=Tick(n=2))
        await mixed.send(value=Tock(n=3))
        await eventually(lambda: got == ["Tick"])
        await eventually(lambda: _pending_zero(redis_client, "rt-mixed", "only-ticks"))
    await sender.stop()
    skipped = REGISTRY.get_sample_value(
        "orderflow_events_skipped_total", {"agent": "rt-only-ticks", "reason": "not_accepted"}
    )
    assert skipped == 2
    assert await redis_client.xlen("dead-letters") == 0


async def _pending_zero(redis_client, stream, group) -> bool:
    return (await redis_client.xpending(stream, group))["pending"] == 0


async def test_events_gives_envelope_message_id_and_delivery_count(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-events", value_type=Tick)
    events = []

    @app.agent(topic, group="events-group")
    async def handle(stream):
        async for event in stream.events():
            events.append(event)

    async with run_app(app):
        entry_id = await topic.send(value=Tick(n=7), key="k-7")
        await eventually(lambda: len(events) == 1)
    event = events[0]
    assert event.message_id == entry_id
    assert event.value == Tick(n=7)
    assert event.delivery_count == 1
    assert event.stream == "rt-events" and event.group == "events-group"
    assert event.envelope.key == "k-7" and event.envelope.event_type == "rt.agents.tick.v1"
    assert event.envelope.source == "rt-agents"


async def test_take_batches_up_to_n_within_seconds(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-take", value_type=Tick)
    batches: list[list[int]] = []

    @app.agent(topic, group="take-group")
    async def handle(stream):
        async for values in stream.take(10, within=0.2):
            batches.append([value.n for value in values])

    async with run_app(app):
        for n in range(25):
            await topic.send(value=Tick(n=n))
        await eventually(lambda: sum(len(b) for b in batches) == 25)
        await eventually(lambda: _pending_zero(redis_client, "rt-take", "take-group"))
    assert all(1 <= len(batch) <= 10 for batch in batches)
    assert [n for batch in batches for n in batch] == list(range(25))


async def test_concurrency_runs_n_bodies_and_keeps_per_key_order(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-concurrent", value_type=Keyed)
    per_key: dict[str, list[int]] = {}
    active = 0
    peak = 0

    @app.agent(topic, group="conc-group", concurrency=4)
    async def handle(stream):
        nonlocal active, peak
        async for value in stream:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001)
            per_key.setdefault(value.key, []).append(value.seq)
            active -= 1

    async with run_app(app):
        for seq in range(40):
            for key in ("a", "b", "c", "d", "e", "f"):
                await topic.send(value=Keyed(key=key, seq=seq), key=key)
        await eventually(lambda: sum(len(v) for v in per_key.values()) == 240)
        await eventually(lambda: _pending_zero(redis_client, "rt-concurrent", "conc-group"))
    assert peak > 1  # several bodies really ran at once
    assert all(seqs == list(range(40)) for seqs in per_key.values())


async def test_timer_runs_repeatedly_and_survives_an_exception(redis_client, redis_url):
    app = make_app(redis_url)
    calls = 0

    @app.timer(0.02)
    async def tick() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bad tick is logged, not fatal")

    async with run_app(app):
        await eventually(lambda: calls >= 5)


async def test_agent_send_and_topic_type_check(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-agent-send", value_type=Tick)
    got: list[int] = []

    @app.agent(topic, group="send-group")
    async def handle(stream):
        async for value in stream:
            got.append(value.n)

    async with run_app(app):
        await handle.send(value=Tick(n=42))
        await eventually(lambda: got == [42])
        try:
            await topic.send(value=Tock(n=1))  # type: ignore[arg-type]  # on purpose
        except TypeError as exc:
            assert "takes Tick" in str(exc)
        else:
            raise AssertionError("a topic must refuse records of other types")
