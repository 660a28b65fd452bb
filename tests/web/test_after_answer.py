"""Publishing a placed order's outbox after its answer (``orderflow.web.after_answer``).

Against a running API (real Valkey and SQLite): the 201 comes back and the order's two
events reach their streams, published once; the registry itself: a stop waits for the
publishes in flight, cancels one that outlasts its time (its rows stay for the relay),
and a task that failed is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.runtime.testing import eventually
from orderflow.web.after_answer import AfterAnswer
from tests.web.conftest import make_settings, running_api


async def test_a_placed_order_is_answered_and_its_events_published_once(
    redis_url: str, redis_client: aioredis.Redis, store_url: str
) -> None:
    async for api in running_api(make_settings(redis_url, store_url)):
        placed = await api.client.post(
            "/api/v1/orders", json={"lines": [{"item_id": "caprese", "quantity": 1}]}
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]

        async def published(order_id: str = order_id) -> list[str]:
            found = []
            for stream in ("orders-stream", "simulate-order-stream"):
                entries: Any = await redis_client.xrange(stream)
                for _, fields in entries:
                    if order_id.encode() in fields[b"payload"]:
                        found.append(fields[b"event_type"].decode())
            return found

        await eventually(published, timeout=10)
        await asyncio.sleep(0.2)  # nothing else comes: each event once
        assert sorted(await published()) == ["order.created.v1", "order.simulate.v1"]
        assert len(api.app.ctx.after_answer) == 0


async def test_drain_waits_for_the_publishes_in_flight() -> None:
    registry = AfterAnswer()
    done: list[int] = []

    async def publish(n: int) -> None:
        await asyncio.sleep(0.05 * n)
        done.append(n)

    for n in range(1, 4):
        registry.spawn(publish(n))
    assert len(registry) == 3
    await registry.drain(within=5)
    assert sorted(done) == [1, 2, 3] and len(registry) == 0


async def test_drain_cancels_what_outlasts_its_time(caplog: pytest.LogCaptureFixture) -> None:
    registry = AfterAnswer()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry.spawn(stuck())
    with caplog.at_level(logging.WARNING, logger="orderflow.web"):
        await registry.drain(within=0.1)
    assert cancelled.is_set() and len(registry) == 0
    assert "cancelled at stop; the relay has them" in caplog.text


async def test_a_failed_task_is_logged_and_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    registry = AfterAnswer()

    async def broken() -> None:
        raise RuntimeError("publish blew up")

    with caplog.at_level(logging.ERROR, logger="orderflow.web"):
        registry.spawn(broken())
        await eventually(lambda: len(registry) == 0, timeout=5)
    assert "after-answer task failed" in caplog.text and "publish blew up" in caplog.text
