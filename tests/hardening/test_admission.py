"""Admission control: a pipeline that is behind gets 503 ``overloaded`` with Retry-After
and nothing ordered; caught up, orders are taken again; a group whose worker is down
(no progress) never closes the door; without Redis the door opens.

The backlog is made for real in the test's Valkey: a consumer group on orders-stream
that reads (so it is seen to move) more slowly than entries arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from orderflow.agents.settings import Settings
from orderflow.agents.topics import ORDERS_GROUP, ORDERS_STREAM, PER_ORDER_STREAMS
from orderflow.runtime.inspect import GroupInfo
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.web.admission import MAX_RETRY_AFTER_S, AdmissionGate, pipeline_streams
from orderflow.web.metrics import ORDERS_REJECTED
from tests.web.conftest import make_settings, running_api

ORDER = {"lines": [{"item_id": "margherita", "quantity": 1}]}
BOUND = 20
FAST = {
    "admission_max_backlog": BOUND,
    "admission_poll_interval_seconds": 0.05,
    "admission_stalled_after_seconds": 1.0,
}


async def wait_until(
    gate: AdmissionGate, condition: Callable[[AdmissionGate], bool], within: float = 10.0
) -> None:
    deadline = time.monotonic() + within
    while not condition(gate):
        assert time.monotonic() < deadline, "the gate did not change in time"
        await asyncio.sleep(0.02)  # the gate is read by a task of the app: polled, bounded


async def backlog(redis: Any, entries: int) -> None:
    """``entries`` unread entries for the orders group, which then reads one: it moves."""
    for n in range(entries):
        await redis.xadd(ORDERS_STREAM, {"filler": str(n)})
    await redis.xreadgroup(ORDERS_GROUP, "test-consumer", {ORDERS_STREAM: ">"}, count=1)


async def catch_up(redis: Any) -> None:
    """The group reads and acknowledges everything."""
    while replies := await redis.xreadgroup(
        ORDERS_GROUP, "test-consumer", {ORDERS_STREAM: ">"}, count=100
    ):
        ids = [entry_id for _, entries in replies for entry_id, _ in entries]
        await redis.xack(ORDERS_STREAM, ORDERS_GROUP, *ids)
    pending = await redis.xpending_range(ORDERS_STREAM, ORDERS_GROUP, "-", "+", 1000)
    if pending:
        await redis.xack(ORDERS_STREAM, ORDERS_GROUP, *[p["message_id"] for p in pending])


def rejected_overloaded() -> float:
    return ORDERS_REJECTED.labels(reason="overloaded")._value.get()


async def test_a_pipeline_behind_refuses_orders_and_orders_nothing_until_it_catches_up(
    redis_client: Any, redis_url: str, store_url: str
) -> None:
    await redis_client.xgroup_create(ORDERS_STREAM, ORDERS_GROUP, id="$", mkstream=True)
    async for api in running_api(make_settings(redis_url, store_url, **FAST)):
        gate = api.app.ctx.admission
        assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 201
        await backlog(redis_client, BOUND + 5)
        await wait_until(gate, lambda g: g.closed)
        stock, orders, before = (
            await api.stock(),
            await api.store.count_orders(),
            rejected_overloaded(),
        )

        refused = await api.client.post("/api/v1/orders", json=ORDER)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == "urn:orderflow:problem:overloaded"
        assert body["backlog"] >= BOUND
        assert "nothing was ordered" in body["detail"]
        assert body["correlation_id"] == refused.headers["x-correlation-id"]
        assert 1 <= int(refused.headers["retry-after"]) <= MAX_RETRY_AFTER_S
        assert await api.stock() == stock
        assert await api.store.count_orders() == orders
        assert rejected_overloaded() == before + 1
        # Only new orders are refused: reads go on.
        assert (await api.client.get("/api/v1/menu")).status_code == 200

        await catch_up(redis_client)
        await wait_until(gate, lambda g: not g.closed)
        assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 201
        assert await api.store.count_orders() == orders + 1


async def test_a_group_that_does_not_move_never_closes_the_door(
    redis_client: Any, redis_url: str, store_url: str
) -> None:
    """Its worker is down: its backlog waits in Redis, ordering goes on."""
    await redis_client.xgroup_create(ORDERS_STREAM, ORDERS_GROUP, id="$", mkstream=True)
    for n in range(BOUND * 3):  # a backlog before the API starts, never read
        await redis_client.xadd(ORDERS_STREAM, {"filler": str(n)})
    async for api in running_api(make_settings(redis_url, store_url, **FAST)):
        gate = api.app.ctx.admission
        codes = []
        for _ in range(5):
            codes.append((await api.client.post("/api/v1/orders", json=ORDER)).status_code)
            await asyncio.sleep(0.1)  # several polls of the gate between the orders
        assert codes == [201] * 5
        await wait_until(gate, lambda g: g.stalled == [f"{ORDERS_GROUP} on {ORDERS_STREAM}"])
        assert not gate.closed

        # It moves (the worker is back, behind): counted again, the door closes ...
        await backlog(redis_client, 1)
        await wait_until(gate, lambda g: g.closed)
        assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 503
        # ... and a group that stops moving again is left out once more.
        await wait_until(gate, lambda g: not g.closed and g.stalled != [])
        assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 201


async def test_without_redis_the_door_opens_and_orders_are_taken(store_url: str) -> None:
    server = LocalRedisServer()
    server.start()
    try:
        redis = Redis.from_url(server.url)
        await redis.xgroup_create(ORDERS_STREAM, ORDERS_GROUP, id="$", mkstream=True)
        async for api in running_api(make_settings(server.url, store_url, **FAST)):
            gate = api.app.ctx.admission
            await backlog(redis, BOUND + 5)
            await wait_until(gate, lambda g: g.closed)
            await redis.aclose()
            server.stop()
            await wait_until(gate, lambda g: not g.closed)
            # The order is committed with its outbox; the relay publishes it later.
            assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 201
    finally:
        server.stop()


async def test_zero_turns_it_off(redis_client: Any, redis_url: str, store_url: str) -> None:
    await redis_client.xgroup_create(ORDERS_STREAM, ORDERS_GROUP, id="$", mkstream=True)
    settings = make_settings(redis_url, store_url, **{**FAST, "admission_max_backlog": 0})
    async for api in running_api(settings):
        assert not hasattr(api.app.ctx, "admission")
        await backlog(redis_client, BOUND * 3)
        for _ in range(3):
            assert (await api.client.post("/api/v1/orders", json=ORDER)).status_code == 201


def reading(lag: int, entries_read: int, pending: int = 0) -> list[tuple[str, GroupInfo]]:
    info = GroupInfo(
        name=ORDERS_GROUP, consumers=1, pending=pending, lag=lag,
        last_delivered_id=f"{entries_read}-0", entries_read=entries_read,
    )  # fmt: skip
    return [(ORDERS_STREAM, info)]


def test_retry_after_is_the_measured_time_to_drain_to_the_reopening_level() -> None:
    gate = AdmissionGate(max_backlog=1000, stalled_after=5.0)
    assert gate.retry_after() == 1  # no rate measured yet
    gate.observe(reading(lag=3000, entries_read=0), now=0.0)
    gate.observe(reading(lag=2900, entries_read=100), now=1.0)  # moved: 100 read/s
    assert gate.closed and gate.backlog == 2900
    assert gate.retry_after() == 24  # (2900 - 500) / 100 s
    gate.observe(reading(lag=900, entries_read=2100), now=2.0)  # 2000/s; mean 1050/s
    assert gate.closed  # 900 > 500: hysteresis, still closed
    assert gate.retry_after() == 1  # (900 - 500) / 1050 s, at least 1
    gate.observe(reading(lag=500, entries_read=2500), now=3.0)
    assert not gate.closed

    slow = AdmissionGate(max_backlog=1000, stalled_after=5.0)
    slow.observe(reading(lag=3000, entries_read=0), now=0.0)
    slow.observe(reading(lag=2990, entries_read=10), now=1.0)  # 10 read/s: 249 s to go
    assert slow.retry_after() == MAX_RETRY_AFTER_S


def test_the_gate_reads_every_partition_of_every_per_order_stream() -> None:
    assert pipeline_streams(1) == PER_ORDER_STREAMS
    three = pipeline_streams(3)
    assert len(three) == 3 * len(PER_ORDER_STREAMS)
    assert f"{ORDERS_STREAM}.p2" in three


def test_the_bound_is_a_setting_with_a_default() -> None:
    assert Settings().admission_max_backlog > 0
    with pytest.raises(ValueError, match="admission_max_backlog"):
        Settings(admission_max_backlog=-1)
