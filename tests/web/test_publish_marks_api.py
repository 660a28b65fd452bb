"""The API defers the "published" marks of what it publishes and writes them at its stop.

With a mark interval of an hour nothing but the server's stop can write them, so the
test sees the deferral (the rows of a placed and a cancelled order published, still
unmarked, while the server runs) and the flush (none unmarked once it has stopped).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from orderflow.models.store import opened_store
from orderflow.runtime.testing import eventually
from tests.web.conftest import make_settings, running_api

ORDERS = "/api/v1/orders"
HOUR = 3600.0


async def test_the_api_defers_its_marks_and_its_stop_writes_them(
    redis_url: str, redis_client: aioredis.Redis, store_url: str
) -> None:
    settings = make_settings(
        redis_url,
        store_url,
        outbox_mark_interval_seconds=HOUR,
        outbox_relay_min_age_seconds=10 * HOUR,
        dedupe_ttl_seconds=int(1000 * HOUR),
    )
    async for api in running_api(settings):
        placed = await api.client.post(
            ORDERS, json={"lines": [{"item_id": "caprese", "quantity": 1}]}
        )
        assert placed.status_code == 201, placed.text
        order: dict[str, Any] = placed.json()
        cancelled = await api.client.post(f"{ORDERS}/{order['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        # created + simulate (published right after the 201: :mod:`after_answer`),
        # cancelled + stock changed: all four published...
        await eventually(lambda marks=api.app.ctx.published_marks: marks.pending == 4)
        assert await redis_client.xlen("orders-stream") == 2
        # ...and none marked yet: the marks wait for the flush.
        assert len(await api.store.outbox_pending(limit=100)) == 4
    async with opened_store(store_url) as store:
        assert await store.outbox_pending(limit=100) == []  # the server's stop flushed them
