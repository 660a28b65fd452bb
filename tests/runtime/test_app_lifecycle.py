"""The App's lifecycle and hygiene: hooks, request_stop before run, topic
redeclaration, departed consumers removed, skipped types logged and counted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from orderflow.runtime import App, Event, Record, Stream
from orderflow.runtime.testing import eventually, run_app


class Ping(Record, event_type="rt.life.ping.v1"):
    n: int


class Pong(Record, event_type="rt.life.pong.v1"):
    n: int


def make_app(redis_url: str, name: str = "rt-life", **options: Any) -> App:
    defaults: dict[str, Any] = {"block_ms": 50, "claim_interval": 0.1, "retry_base": 0.01}
    return App(name, broker=redis_url, **{**defaults, **options})


async def test_startup_runs_before_agents_and_shutdown_after_them_in_reverse(redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-life-hooks", value_type=Ping)
    calls: list[str] = []

    @app.on_startup
    async def open_first() -> None:
        calls.append("startup-1")

    @app.on_startup
    async def open_second() -> None:
        calls.append("startup-2")

    @app.on_shutdown
    async def close_first() -> None:
        calls.append("shutdown-1")

    @app.on_shutdown
    async def close_second() -> None:
        calls.append("shutdown-2")

    @app.agent(topic, group="hooks-group")
    async def handle(stream: Stream[Ping]) -> None:
        async for ping in stream:
            calls.append(f"handled-{ping.n}")
            await asyncio.sleep(0.2)  # still in flight when stop() begins
            calls.append(f"finished-{ping.n}")

    async with run_app(app):
        await topic.send(value=Ping(n=1))
        await eventually(lambda: "handled-1" in calls)
    assert calls == [
        "startup-1", "startup-2", "handled-1", "finished-1", "shutdown-2", "shutdown-1",
    ]  # fmt: skip


async def test_a_failing_startup_hook_fails_start_and_no_agent_runs(redis_url):
    app = make_app(redis_url)
    handled: list[int] = []

    @app.on_startup
    async def store_unreachable() -> None:
        raise ConnectionRefusedError("store down")

    @app.agent(app.topic("rt-life-fail-start", value_type=Ping), group="g")
    async def handle(stream: Stream[Ping]) -> None:
        async for ping in stream:
            handled.append(ping.n)

    with pytest.raises(ConnectionRefusedError):
        await app.start()
    assert not app.started and handled == []
    await app.stop()


async def test_on_error_gets_the_failed_event_and_timer_errors(redis_url):
    app = make_app(redis_url, max_deliveries=2)
    topic = app.topic("rt-life-errors", value_type=Ping)
    reported: list[tuple[str, int | None]] = []

    @app.on_error
    async def report(exc: BaseException, event: Event[Any] | None) -> None:
        reported.append((str(exc), event.value.n if event is not None else None))

    @app.agent(topic, group="errors-group")
    async def handle(stream: Stream[Ping]) -> None:
        async for ping in stream:
            raise ValueError(f"bad ping {ping.n}")

    ticks = 0

    @app.timer(0.05)
    async def failing_timer() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise KeyError("timer")

    async with run_app(app):
        await topic.send(value=Ping(n=7))
        await eventually(lambda: reported.count(("bad ping 7", 7)) == 2)  # both deliveries
        await eventually(lambda: ("'timer'", None) in reported)


async def test_request_stop_before_run_is_honoured(redis_url):
    app = make_app(redis_url)
    started: list[bool] = []

    @app.on_startup
    async def mark() -> None:
        started.append(True)

    app.request_stop()
    await asyncio.wait_for(app.run(), timeout=10)  # returns: it did not wait for a signal
    assert started == [True] and not app.started


def test_redeclaring_a_topic_returns_it_or_refuses_other_options(redis_url):
    app = make_app(redis_url)
    first = app.topic("rt-life-declared", value_type=Ping, maxlen=10)
    assert app.topic("rt-life-declared", value_type=Ping, maxlen=10) is first
    with pytest.raises(ValueError, match="already declared"):
        app.topic("rt-life-declared", value_type=Pong, maxlen=10)
    with pytest.raises(ValueError, match="already declared"):
        app.topic("rt-life-declared", value_type=Ping, maxlen=20)
    with pytest.raises(ValueError, match="already declared"):
        app.topic("rt-life-declared")


async def test_departed_consumers_are_claimed_from_then_removed(redis_client, redis_url):
    stream, group = "rt-life-departed", "departed-group"
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    sender = make_app(redis_url, name="rt-life-sender")
    topic = sender.topic(stream, value_type=Ping)
    for n in range(3):
        await topic.send(value=Ping(n=n))
    # Two consumers of earlier processes: one died holding an entry, one owns nothing.
    await redis_client.xreadgroup(group, "old-host-1", {stream: ">"}, count=1)
    await redis_client.xreadgroup(group, "old-host-2", {stream: ">"}, count=1)
    [(_, [(entry_id, _)])] = await redis_client.xreadgroup(group, "old-host-2", {stream: "0"})
    await redis_client.xack(stream, group, entry_id)
    await asyncio.sleep(0.3)  # both idle longer than claim_idle_ms below

    app = make_app(redis_url, claim_idle_ms=200)
    seen: list[int] = []

    @app.agent(app.topic(stream, value_type=Ping), group=group)
    async def handle(stream_: Stream[Ping]) -> None:
        async for ping in stream_:
            seen.append(ping.n)

    async def consumer_names() -> set[str]:
        rows = await redis_client.xinfo_consumers(stream, group)
        return {row["name"].decode() for row in rows}

    async with run_app(app):
        await eventually(lambda: sorted(seen) == [0, 2], timeout=20)  # 0 claimed from old-1
        await eventually(
            lambda: _is(consumer_names(), {app.consumer_name}), timeout=20
        )  # both old consumers gone, ours stays
    await sender.stop()


async def _is(names: Any, expected: set[str]) -> bool:
    return bool(await names == expected)


async def test_skipped_types_are_logged_rate_limited_and_counted(redis_url, caplog):
    app = make_app(redis_url, name="rt-life-skips")
    got: list[int] = []

    @app.agent(app.topic("rt-life-mixed", value_type=Ping), group="g", name="rt-life-skipper")
    async def handle(stream: Stream[Ping]) -> None:
        async for ping in stream:
            got.append(ping.n)

    sender = make_app(redis_url, name="rt-life-mixed-sender")
    mixed = sender.topic("rt-life-mixed")
    caplog.set_level(logging.INFO, logger="orderflow.consumer")
    async with run_app(app):
        for n in range(5):
            await mixed.send(value=Pong(n=n))
        await mixed.send(value=Ping(n=99))
        await eventually(lambda: got == [99])
    await sender.stop()
    lines = [r.getMessage() for r in caplog.records if "not a type its topic" in r.getMessage()]
    assert len(lines) == 1 and "rt.life.pong.v1" in lines[0]  # once per type per minute
    skipped = REGISTRY.get_sample_value(
        "orderflow_events_skipped_total", {"agent": "rt-life-skipper", "reason": "not_accepted"}
    )
    assert skipped == 5
