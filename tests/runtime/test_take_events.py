"""``stream.take_events``: the events that have already arrived as one list, one event
of a list failed alone (``stream.fail``), and ``stream.handling(event)`` scoping sends."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Event, Record, Stream
from orderflow.runtime.send_ids import derived_event_id
from orderflow.runtime.testing import eventually, run_app


class Tick(Record, event_type="rt.take_events.tick.v1"):
    n: int


def make_app(redis_url: str, **options: Any) -> App:
    defaults = {
        "block_ms": 50,
        "claim_interval": 0.1,
        "claim_idle_ms": 60_000,  # only our own back-off can bring an entry back
        "retry_base": 0.02,
        "retry_cap": 0.1,
        "scheduler_interval": 0.05,
    }
    return App("rt-take-events", broker=redis_url, **{**defaults, **options})


async def prefill(redis_client: aioredis.Redis, stream: str, count: int) -> None:
    """``count`` ticks on ``stream`` before any agent runs: its first read holds them all."""
    pipe = redis_client.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(stream, Envelope.new(Tick(n=n), source="t").to_fields())  # type: ignore[arg-type]
    await pipe.execute()


async def entries(redis_client: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    """The field maps of every entry of ``stream``, oldest first."""
    read = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis_client.xrange(stream))
    return [fields for _, fields in read]


async def pending(redis_client: aioredis.Redis, stream: str, group: str) -> int:
    return int((await redis_client.xpending(stream, group))["pending"])


async def test_a_list_holds_the_events_already_arrived_and_never_waits_for_more(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await prefill(redis_client, "rt-te-arrived", 25)
    app = make_app(redis_url, read_count=100)
    topic = app.topic("rt-te-arrived", value_type=Tick)
    lists: list[list[int]] = []

    @app.agent(topic, group="te-arrived")
    async def handle(stream: Stream[Tick]) -> None:
        async for events in stream.take_events(10):
            assert all(isinstance(event, Event) for event in events)
            lists.append([event.value.n for event in events])

    async with run_app(app):
        await eventually(lambda: sum(map(len, lists)) == 25)
        # The 25 were read at once: lists of up to 10 of them, nothing waited for.
        assert [len(events) for events in lists] == [10, 10, 5]
        # Then one at a time: a list is what has arrived, never held back for more.
        for n in range(25, 28):
            await topic.send(value=Tick(n=n))
            await eventually(lambda n=n: lists[-1] == [n])
        await eventually(lambda: _none_pending(redis_client, "rt-te-arrived", "te-arrived"))
    assert [len(events) for events in lists] == [10, 10, 5, 1, 1, 1]
    assert [n for events in lists for n in events] == list(range(28))


async def _none_pending(redis_client: aioredis.Redis, stream: str, group: str) -> bool:
    return await pending(redis_client, stream, group) == 0


async def test_a_failed_event_is_retried_alone_and_the_others_are_acked_once(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await prefill(redis_client, "rt-te-retry", 10)
    app = make_app(redis_url)
    topic = app.topic("rt-te-retry", value_type=Tick)
    handled: Counter[int] = Counter()
    sizes: list[int] = []
    reported: list[tuple[str, int]] = []

    @app.on_error
    async def report(exc: BaseException, event: Event[Any] | None) -> None:
        assert event is not None
        reported.append((str(exc), event.value.n))

    @app.agent(topic, group="te-retry")
    async def handle(stream: Stream[Tick]) -> None:
        async for events in stream.take_events(100):
            sizes.append(len(events))
            for event in events:
                handled[event.value.n] += 1
                if event.value.n == 3 and event.delivery_count == 1:
                    await stream.fail(event, RuntimeError("first try of 3"))
                    await stream.fail(event, RuntimeError("failed twice: ignored"))

    async with run_app(app):
        await eventually(lambda: handled[3] == 2)
        await eventually(lambda: _none_pending(redis_client, "rt-te-retry", "te-retry"))
    assert sizes == [10, 1]  # the retry comes back alone
    assert handled == Counter({n: 2 if n == 3 else 1 for n in range(10)})
    assert reported == [("first try of 3", 3)]
    assert await redis_client.xlen("dead-letters") == 0


async def test_an_event_failing_every_time_is_dead_lettered_alone(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await prefill(redis_client, "rt-te-dead", 6)
    app = make_app(redis_url, max_deliveries=3)
    topic = app.topic("rt-te-dead", value_type=Tick)
    done: Counter[int] = Counter()
    tries = 0

    @app.agent(topic, group="te-dead")
    async def handle(stream: Stream[Tick]) -> None:
        nonlocal tries
        async for events in stream.take_events(100):
            for event in events:
                if event.value.n == 4:
                    tries += 1
                    await stream.fail(event, ValueError("poison"))
                else:
                    done[event.value.n] += 1

    async with run_app(app):
        await eventually(lambda: _xlen_is(redis_client, "dead-letters", 1))
        await eventually(lambda: _none_pending(redis_client, "rt-te-dead", "te-dead"))
    assert tries == 3
    assert done == Counter({n: 1 for n in range(6) if n != 4})
    [letter] = await entries(redis_client, "dead-letters")
    assert letter[b"error_type"] == b"ValueError"
    assert letter[b"stream"] == b"rt-te-dead"


async def _xlen_is(redis_client: aioredis.Redis, stream: str, count: int) -> bool:
    return await redis_client.xlen(stream) == count


async def test_a_body_raising_after_failing_one_event_fails_each_event_once(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await prefill(redis_client, "rt-te-raise", 4)
    app = make_app(redis_url)
    topic = app.topic("rt-te-raise", value_type=Tick)
    deliveries: Counter[int] = Counter()
    raised = False

    @app.agent(topic, group="te-raise")
    async def handle(stream: Stream[Tick]) -> None:
        nonlocal raised
        async for events in stream.take_events(100):
            for event in events:
                deliveries[event.value.n] += 1
            if not raised:
                raised = True
                await stream.fail(events[0], RuntimeError("alone"))
                raise RuntimeError("the whole list")

    async with run_app(app):
        await eventually(lambda: sum(deliveries.values()) == 8)
        await eventually(lambda: _none_pending(redis_client, "rt-te-raise", "te-raise"))
        await asyncio.sleep(0.3)  # a second retry of events[0] would show up by now
    # Every event failed once (the first alone, the rest with the list), then done once.
    assert deliveries == Counter({0: 2, 1: 2, 2: 2, 3: 2})
    failed = REGISTRY.get_sample_value("orderflow_events_failed_total", {"agent": handle.name})
    assert failed == 4


async def test_sends_in_handling_get_the_ids_of_handling_the_event_alone(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await prefill(redis_client, "rt-te-scope-in", 5)
    app = make_app(redis_url)
    ticks = app.topic("rt-te-scope-in", value_type=Tick)
    out = app.topic("rt-te-scope-out", value_type=Tick)
    sizes: list[int] = []

    async def echo(stream: Stream[Tick], event: Event[Tick]) -> None:
        with stream.handling(event):
            await asyncio.sleep(0.001 * (5 - event.value.n))  # finish in reverse order
            await out.send(value=Tick(n=event.value.n))
            await out.send(value=Tick(n=100 + event.value.n))

    @app.agent(ticks, group="te-scope")
    async def handle(stream: Stream[Tick]) -> None:
        async for events in stream.take_events(100):
            sizes.append(len(events))
            await asyncio.gather(*(echo(stream, event) for event in events))

    async with run_app(app):
        await eventually(lambda: _xlen_is(redis_client, "rt-te-scope-out", 10))
    assert sizes == [5]
    inputs = {
        int(Envelope.from_fields(fields).payload["n"]): Envelope.from_fields(fields)
        for fields in await entries(redis_client, "rt-te-scope-in")
    }
    sent = [
        Envelope.from_fields(fields) for fields in await entries(redis_client, "rt-te-scope-out")
    ]
    assert len(sent) == 10
    for envelope in sent:
        n = int(envelope.payload["n"])
        source = inputs[n % 100]
        ordinal = 1 if n >= 100 else 0
        assert envelope.event_id == derived_event_id(handle.handler_id, [source.event_id], ordinal)
        assert envelope.causation_id == source.event_id
        assert envelope.correlation_id == source.correlation_id
