"""Fixtures for the end-to-end tests: a seeded SQLite store and the service apps running.

Everything is real: the Valkey from the session fixture, a SQLite file per test,
and the same service apps the workers run (zero simulator delays), started
and stopped the way ``run_app`` from the runtime's test harness does it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from orderflow.agents.services import create_service_apps
from orderflow.agents.topics import ALL_STREAMS, topic_streams
from orderflow.models.store import Store
from orderflow.runtime import App, Envelope, keys


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orderflow.db'}"


@pytest.fixture
async def services(
    redis_url: str, redis_client: aioredis.Redis, store: Store
) -> AsyncIterator[list[App]]:
    """All four service apps, in-process, on a flushed server, zero simulator delays."""
    async with running(
        create_service_apps(
            broker=redis_url, store=store, simulator_delay=(0.0, 0.0), relay_interval=0.2
        )
    ) as apps:
        yield apps


@contextlib.asynccontextmanager
async def running(apps: list[App]) -> AsyncIterator[list[App]]:
    """Start ``apps`` in order; on exit stop the ones that started."""
    started: list[App] = []
    try:
        for app in apps:
            await app.start()
            started.append(app)
        yield apps
    finally:
        # Stopped together: each stop waits for its agents' blocking reads to return.
        await asyncio.gather(*(app.stop() for app in started))


async def stream_envelopes(redis: aioredis.Redis, stream: str) -> list[Envelope]:
    """Every entry of topic ``stream``, decoded: of each of its partitions in turn when it
    is partitioned (``ORDERFLOW_TOPIC_PARTITIONS``), so an order's entries, all in one
    partition, keep their order."""
    envelopes: list[Envelope] = []
    for name in topic_streams(stream):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(name)  # type: ignore[assignment]
        envelopes.extend(Envelope.from_fields(fields) for _, fields in entries)
    return envelopes


async def envelopes_for_order(
    redis: aioredis.Redis, stream: str, order_id: str, event_type: str | None = None
) -> list[Envelope]:
    return [
        envelope
        for envelope in await stream_envelopes(redis, stream)
        if envelope.payload.get("order_id") == order_id
        and (event_type is None or envelope.event_type == event_type)
    ]


async def all_consumed(redis: aioredis.Redis) -> bool:
    """True when no event is delayed and every group has read and acked every stream
    (every partition of a partitioned one)."""
    for stream in (name for topic in ALL_STREAMS for name in topic_streams(topic)):
        if await redis.zcard(keys.delayed_key(stream)):
            return False  # a delayed event is still waiting to be appended
        if not await redis.exists(stream):
            continue
        info = await redis.xinfo_stream(stream)
        last = info["last-generated-id"]
        for group in await redis.xinfo_groups(stream):
            if group["pending"] or group["last-delivered-id"] != last:
                return False
    return True
