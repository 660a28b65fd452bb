"""Semantic 9: graceful stop (finish + ack in-flight, bounded) and reconnects."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Record
from orderflow.runtime.testing import eventually, run_app


class Work(Record, event_type="rt.shutdown.work.v1"):
    n: int


def make_app(redis_url: str, **options) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.2, "scheduler_interval": 0.05}
    return App("rt-shutdown", broker=redis_url, **{**defaults, **options})


async def fill(redis_client, stream: str, count: int) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(stream, Envelope.new(Work(n=n), source="t").to_fields())
    await pipe.execute()


async def test_stop_finishes_and_acks_what_was_handed_over(redis_client, redis_url):
    await fill(redis_client, "rt-graceful", 5)
    app = make_app(redis_url, shutdown_timeout=10.0)
    started: list[int] = []
    finished: list[int] = []
    first = asyncio.Event()

    @app.agent(app.topic("rt-graceful", value_type=Work), group="graceful")
    async def handle(stream):
        async for value in stream:
            started.append(value.n)
            first.set()
            await asyncio.sleep(0.02)
            finished.append(value.n)

    await app.start()
    await asyncio.wait_for(first.wait(), 10)
    await app.stop()  # while the first event is in the handler
    assert started == finished  # nothing abandoned half-way
    assert finished == [0, 1, 2, 3, 4]  # the delivered batch was finished, in order
    info = await redis_client.xpending("rt-graceful", "graceful")
    assert info["pending"] == 0  # ... and acked


async def test_stop_gives_up_after_shutdown_timeout_and_leaves_the_entry_pending(
    redis_client, redis_url
):
    await fill(redis_client, "rt-stuck", 1)
    app = make_app(redis_url, shutdown_timeout=0.3)
    entered = asyncio.Event()
    cancelled = False

    @app.agent(app.topic("rt-stuck", value_type=Work), group="stuck")
    async def handle(stream):
        nonlocal cancelled
        async for _ in stream:
            entered.set()
            try:
                await asyncio.Event().wait()  # never finishes
            except asyncio.CancelledError:
                cancelled = True
                raise

    await app.start()
    await asyncio.wait_for(entered.wait(), 10)
    await app.stop()
    assert cancelled
    # Not acked: another consumer will claim it (at-least-once).
    assert (await redis_client.xpending("rt-stuck", "stuck"))["pending"] == 1


async def test_sigterm_stops_run_gracefully(redis_client, redis_url):
    await fill(redis_client, "rt-sigterm", 3)
    app = make_app(redis_url)
    done: list[int] = []

    @app.agent(app.topic("rt-sigterm", value_type=Work), group="sigterm")
    async def handle(stream):
        async for value in stream:
            done.append(value.n)

    runner = asyncio.create_task(app.run())
    await eventually(lambda: len(done) == 3)
    signal.raise_signal(signal.SIGTERM)  # run() installed a handler: the app stops
    await asyncio.wait_for(runner, 15)
    assert not app.started
    assert (await redis_client.xpending("rt-sigterm", "sigterm"))["pending"] == 0


async def test_server_restart_mid_run_loses_nothing(fresh_server):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(fresh_server.url)
    await fill(client, "rt-restart", 300)
    app = App(
        "rt-restart-app",
        broker=fresh_server.url,
        block_ms=50,
        claim_interval=0.2,
        read_count=20,
        scheduler_interval=0.05,
    )
    seen: set[int] = set()

    @app.agent(app.topic("rt-restart", value_type=Work), group="restart", name="rt-restart-agent")
    async def handle(stream):
        async for value in stream:
            await asyncio.sleep(0.001)
            seen.add(value.n)

    async with run_app(app):
        await eventually(lambda: len(seen) >= 50)
        await asyncio.to_thread(fresh_server.stop)  # SIGTERM: AOF flushed, server gone
        await eventually(
            lambda: REGISTRY.get_sample_value(
                "orderflow_reconnects_total", {"agent": "rt-restart-agent"}
            )
        )
        await asyncio.to_thread(fresh_server.start)
        await eventually(lambda: len(seen) == 300, timeout=30)
        client = aioredis.Redis.from_url(fresh_server.url)
        await eventually(lambda: _pending_zero(client, "rt-restart", "restart"), timeout=15)
    await client.aclose()
    assert seen == set(range(300))


async def _pending_zero(client, stream: str, group: str) -> bool:
    return (await client.xpending(stream, group))["pending"] == 0
