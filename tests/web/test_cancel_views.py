"""How ``cancelled`` shows everywhere but the store: the notifications cache, the tracking
views (WebSocket and SSE, with their resume positions), the fan-out's reading of
``order.cancelled.v1``, and the operator console's refusal to move a cancelled order.
Real Valkey for the cache, a real app and SQLite store for the console."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.agents.status_cache import merge_order_status, read_latest_status
from orderflow.agents.topics import ORDER_STATUS_STREAM
from orderflow.models.events import OrderCancelled
from orderflow.web.fanout import OrderUpdate, update_from
from orderflow.web.order_events import missed_updates, parse_position, position_of, resumed_view
from orderflow.web.order_view import OrderView
from tests.web.conftest import LiveApi, make_settings, running_api

ORDER = "0" * 31 + "7"
TOKEN = "s3cret-operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def merge(redis: aioredis.Redis, status: str, at: str) -> int:
    pipe = redis.pipeline(transaction=True)
    merge_order_status(pipe, order_id=ORDER, status=status, at=at, ttl_seconds=600)
    (changed,) = await pipe.execute()
    return int(changed)


async def test_the_cache_keeps_cancelled_whatever_arrives_after_it(
    redis_client: aioredis.Redis,
) -> None:
    assert await merge(redis_client, "created", "t1") == 1
    assert await merge(redis_client, "cancelled", "t3") == 1
    for late in ("created", "confirmed", "preparing", "delivered"):
        assert await merge(redis_client, late, "t4") == 0
    cached = await read_latest_status(redis_client, ORDER)
    assert cached is not None
    assert (cached["status"], cached["at"]) == ("cancelled", "t3")


async def test_the_cache_takes_cancelled_even_before_an_older_update(
    redis_client: aioredis.Redis,
) -> None:
    # The two streams' events can be merged out of order: cancelled still wins.
    assert await merge(redis_client, "cancelled", "t3") == 1
    assert await merge(redis_client, "confirmed", "t2") == 0
    cached = await read_latest_status(redis_client, ORDER)
    assert cached is not None and cached["status"] == "cancelled"


def test_the_fanout_reads_a_cancel_as_an_order_update() -> None:
    at = "2026-11-26T03:30:00.000000Z"
    event = OrderCancelled(order_id=ORDER, at=at, previous="confirmed")
    assert update_from(event) == OrderUpdate(ORDER, "cancelled", at)


def test_a_tracking_view_shows_cancelled_and_then_nothing_more() -> None:
    view = OrderView(ORDER, "confirmed", [{"status": "created", "at": "t1"}])
    message = view.apply(OrderUpdate(ORDER, "cancelled", "t3"))
    assert message == {"type": "order.status", "order_id": ORDER, "status": "cancelled", "at": "t3"}
    assert view.apply(OrderUpdate(ORDER, "preparing", "t4")) is None
    assert view.apply(OrderUpdate(ORDER, "confirmed", "t2")) is None
    assert view.status == "cancelled"


def test_the_sse_position_of_a_cancelled_order_resumes_exactly() -> None:
    full = OrderView(
        ORDER,
        "cancelled",
        [
            {"status": "created", "at": "t1"},
            {"status": "confirmed", "at": "t2"},
            {"status": "cancelled", "at": "t3"},
        ],
    )
    assert position_of(full) == "5.0"
    assert parse_position("5.0") == (5, -1)
    assert parse_position("6.0") is None
    # A client that had seen "confirmed" (1.0) gets exactly the cancel.
    seen = resumed_view(full, 1, -1)
    messages = [m for m in (seen.apply(u) for u in missed_updates(full)) if m is not None]
    assert [m["status"] for m in messages] == ["cancelled"]
    # One that had seen the cancel (5.0) gets nothing again.
    done = resumed_view(full, 5, -1)
    assert [done.apply(u) for u in missed_updates(full)] == [None, None, None]


@pytest.fixture
async def ops(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    async for live in running_api(make_settings(redis_url, store_url, operator_token=TOKEN)):
        yield live


async def test_the_console_refuses_to_advance_a_cancelled_order(
    ops: LiveApi, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderflow.audit")
    body = {"lines": [{"item_id": "margherita", "quantity": 1}], "simulate": False}
    order = (await ops.client.post("/api/v1/orders", json=body)).json()
    assert (await ops.client.post(f"/api/v1/orders/{order['id']}/cancel")).status_code == 200

    response = await ops.client.post(
        f"/api/v1/ops/orders/{order['id']}/advance", headers=AUTH, json=None
    )

    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "urn:orderflow:problem:order-cancelled"
    assert problem["status_now"] == "cancelled"
    assert "cancelled by the customer" in problem["detail"]
    assert await redis_client.xlen(ORDER_STATUS_STREAM) == 0  # nothing reported
    listed = (await ops.client.get("/api/v1/ops/orders", headers=AUTH)).json()["orders"]
    assert [(o["id"], o["status"], o["next_step"]) for o in listed] == [
        (order["id"], "cancelled", None)
    ]
