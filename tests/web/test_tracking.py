"""The order-tracking WebSocket against real gateway processes and a real Redis.

What these tests prove:
* the first message is a snapshot of the order as stored (history, delivery);
* then every change published to orders-stream / deliveries-stream arrives, in
  publication order per stream, and never one older than what the socket
  already said (stale and repeated events are filtered, other orders' events
  are not delivered);
* an order only the status cache knows still gets a snapshot;
* unknown order -> close 4404, malformed id -> close 4400;
* {"type": "ping"} -> {"type": "pong"};
* two gateway processes on the same Redis: a client on each sees every update
  (fan-out read, not a shared consumer group).

The keep-alive (a peer that stops answering pings is dropped) is in
test_tracking_keepalive.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from orderflow.models.documents import Order, OrderLineRequest, utc_now
from orderflow.models.events import (
    DeliveryCreated,
    DeliveryStatusUpdated,
    OrderCreated,
    OrderStatusUpdated,
)
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.records import Record
from tests.web.api_process import ApiProcess

RECEIVE_GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('tracking-store') / 'orderflow.db'}"


@pytest.fixture(scope="module")
def gateway(
    redis_server: LocalRedisServer, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    log = tmp_path_factory.mktemp("gateway-logs") / "gateway-a.log"
    process = ApiProcess(redis_url=redis_server.url, store_url=store_url, log_path=log)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def place_order(store: Store) -> Order:
    result = await store.place_order(
        [OrderLineRequest(item_id=DEMO_MENU[0].id, quantity=1)],
        idempotency_key=None,
        request_hash=None,
        events=lambda order: [],
    )
    return result.order


async def publish(redis: aioredis.Redis, stream: str, value: Record) -> None:
    """What the services do: one enveloped event per stream entry."""
    fields: Any = Envelope.new(value, source="test-tracking").to_fields()
    await redis.xadd(stream, fields)


def order_status(order_id: str, status: str, previous: str) -> OrderStatusUpdated:
    return OrderStatusUpdated(order_id=order_id, status=status, at=utc_now(), previous=previous)


def delivery_status(order_id: str, delivery_id: str, status: str, previous: str) -> Record:
    return DeliveryStatusUpdated(
        delivery_id=delivery_id, order_id=order_id, status=status, at=utc_now(), previous=previous
    )


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_GUARD))
    assert isinstance(message, dict)
    return message


async def receive_until(ws: ClientConnection, *last: tuple[str, str]) -> list[dict[str, Any]]:
    """Messages until every ``(type, status)`` in ``last`` has been received."""
    waiting = set(last)
    messages: list[dict[str, Any]] = []
    while waiting:
        message = await receive(ws)
        messages.append(message)
        waiting.discard((message["type"], message.get("status", "")))
    return messages


def order_messages(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The order's own changes, in the order received (one stream: strictly ordered)."""
    return [(m["type"], m["status"]) for m in messages if m["type"] == "order.status"]


def delivery_messages(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The delivery's changes, in the order received (one stream: strictly ordered)."""
    return [(m["type"], m["status"]) for m in messages if m["type"].startswith("delivery.")]


async def close_of(url: str) -> tuple[int | None, str | None]:
    """Connect, expect the server to close, return its close code and reason."""
    async with connect(url, open_timeout=RECEIVE_GUARD) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), RECEIVE_GUARD)
        return ws.close_code, ws.close_reason


def tracking_url(gateway: ApiProcess, order_id: str) -> str:
    return f"{gateway.ws_url}/ws/v1/order-tracking/{order_id}"


async def test_snapshot_first_then_every_newer_change(
    gateway: ApiProcess, store: Store, redis_client: aioredis.Redis
) -> None:
    order = await place_order(store)
    other = await place_order(store)
    # The store is ahead of the streams: the snapshot must carry it.
    await store.update_order_status(order.id, "confirmed", utc_now())
    await store.update_order_status(order.id, "preparing", utc_now())
    delivery_id = uuid.uuid4().hex

    async with connect(tracking_url(gateway, order.id), open_timeout=RECEIVE_GUARD) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["order_id"] == order.id
        assert snapshot["status"] == "preparing"
        assert [h["status"] for h in snapshot["history"]] == ["created", "confirmed", "preparing"]
        assert all(h["at"] for h in snapshot["history"])
        assert snapshot["delivery"] is None

        await publish(redis_client, "orders-stream", order_status(order.id, "confirmed", "created"))
        await publish(redis_client, "orders-stream", order_status(other.id, "confirmed", "created"))
        await publish(
            redis_client, "orders-stream", order_status(order.id, "out_for_delivery", "preparing")
        )
        await publish(
            redis_client,
            "deliveries-stream",
            DeliveryCreated(delivery_id=delivery_id, order_id=order.id, created_at=utc_now()),
        )
        for status, previous in (("on_the_way", "waiting"), ("on_the_way", "waiting")):
            await publish(
                redis_client,
                "deliveries-stream",
                delivery_status(order.id, delivery_id, status, previous),
            )
        await publish(redis_client, "orders-stream", order_status(order.id, "preparing", "created"))
        await publish(
            redis_client,
            "deliveries-stream",
            delivery_status(order.id, delivery_id, "delivered", "on_the_way"),
        )
        await publish(
            redis_client, "orders-stream", order_status(order.id, "delivered", "out_for_delivery")
        )

        messages = await receive_until(
            ws, ("order.status", "delivered"), ("delivery.status", "delivered")
        )

    assert order_messages(messages) == [
        ("order.status", "out_for_delivery"),
        ("order.status", "delivered"),
    ]
    assert delivery_messages(messages) == [
        ("delivery.created", "waiting"),
        ("delivery.status", "on_the_way"),
        ("delivery.status", "delivered"),
    ]
    assert all(m["order_id"] == order.id and m["at"] for m in messages)
    assert all(m["delivery_id"] == delivery_id for m in messages if m["type"].startswith("deliv"))


async def test_order_created_event_and_snapshot_with_delivery(
    gateway: ApiProcess, store: Store, redis_client: aioredis.Redis
) -> None:
    order = await place_order(store)
    await store.update_order_status(order.id, "out_for_delivery", utc_now())
    made = await store.create_delivery(order.id)
    delivery, created = made.delivery, made.created
    assert created

    async with connect(tracking_url(gateway, order.id), open_timeout=RECEIVE_GUARD) as ws:
        snapshot = await receive(ws)
        assert snapshot["status"] == "out_for_delivery"
        assert snapshot["delivery"]["delivery_id"] == delivery.id
        assert snapshot["delivery"]["status"] == "waiting"
        # A duplicate of the creation (outbox re-publish) is not news.
        await publish(
            redis_client,
            "orders-stream",
            OrderCreated(
                order_id=order.id, lines=order.lines, total=order.total, created_at=order.created_at
            ),
        )
        await publish(
            redis_client,
            "deliveries-stream",
            DeliveryCreated(delivery_id=delivery.id, order_id=order.id, created_at=utc_now()),
        )
        await publish(
            redis_client,
            "deliveries-stream",
            delivery_status(order.id, delivery.id, "on_the_way", "waiting"),
        )
        await publish(
            redis_client, "orders-stream", order_status(order.id, "delivered", "out_for_delivery")
        )
        messages = await receive_until(
            ws, ("order.status", "delivered"), ("delivery.status", "on_the_way")
        )

    assert order_messages(messages) == [("order.status", "delivered")]
    assert delivery_messages(messages) == [("delivery.status", "on_the_way")]


async def test_order_known_only_to_the_status_cache(
    gateway: ApiProcess, redis_client: aioredis.Redis
) -> None:
    order_id = uuid.uuid4().hex
    at = utc_now()
    await redis_client.set(
        f"orderflow:status:{order_id}",
        json.dumps({"order_id": order_id, "status": "confirmed", "at": at, "delivery": None}),
    )
    async with connect(tracking_url(gateway, order_id), open_timeout=RECEIVE_GUARD) as ws:
        snapshot = await receive(ws)
    assert snapshot == {
        "type": "snapshot",
        "order_id": order_id,
        "status": "confirmed",
        "history": [{"status": "confirmed", "at": at}],
        "delivery": None,
    }


async def test_unknown_order_is_closed_with_4404(gateway: ApiProcess) -> None:
    code, reason = await close_of(tracking_url(gateway, uuid.uuid4().hex))
    assert code == 4404
    assert reason and "unknown order" in reason


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-an-order",
        "ABCDEF0123456789ABCDEF0123456789",  # upper case
        "0123456789abcdef",  # too short
        "%7B%22%24gt%22%3A%22%22%7D",  # {"$gt": ""}
        "0123456789abcdef0123456789abcdef0",  # too long
    ],
)
async def test_malformed_order_id_is_closed_with_4400(gateway: ApiProcess, bad_id: str) -> None:
    code, reason = await close_of(tracking_url(gateway, bad_id))
    assert code == 4400
    assert reason and "malformed" in reason


async def test_ping_message_gets_pong(gateway: ApiProcess, store: Store) -> None:
    order = await place_order(store)
    async with connect(tracking_url(gateway, order.id), open_timeout=RECEIVE_GUARD) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}
        await ws.send("this is not json")
        error = await receive(ws)
        assert error["type"] == "error" and "ping" in error["detail"]
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}  # still open after a bad message


async def test_two_gateway_processes_each_see_every_update(
    gateway: ApiProcess,
    redis_server: LocalRedisServer,
    store_url: str,
    store: Store,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    second = ApiProcess(
        redis_url=redis_server.url, store_url=store_url, log_path=tmp_path / "gateway-b.log"
    )
    await asyncio.to_thread(second.start)
    try:
        order = await place_order(store)
        delivery_id = uuid.uuid4().hex
        async with (
            connect(tracking_url(gateway, order.id), open_timeout=RECEIVE_GUARD) as ws_a,
            connect(tracking_url(second, order.id), open_timeout=RECEIVE_GUARD) as ws_b,
        ):
            for ws in (ws_a, ws_b):
                assert (await receive(ws))["status"] == "created"
            lifecycle = ("created", "confirmed", "preparing", "out_for_delivery")
            for previous, status in itertools.pairwise(lifecycle):
                await publish(
                    redis_client, "orders-stream", order_status(order.id, status, previous)
                )
            await publish(
                redis_client,
                "deliveries-stream",
                DeliveryCreated(delivery_id=delivery_id, order_id=order.id, created_at=utc_now()),
            )
            await publish(
                redis_client,
                "deliveries-stream",
                delivery_status(order.id, delivery_id, "on_the_way", "waiting"),
            )
            await publish(
                redis_client,
                "orders-stream",
                order_status(order.id, "delivered", "out_for_delivery"),
            )
            last = (("order.status", "delivered"), ("delivery.status", "on_the_way"))
            seen_a, seen_b = await asyncio.gather(
                receive_until(ws_a, *last), receive_until(ws_b, *last)
            )
    finally:
        await asyncio.to_thread(second.stop)

    for seen in (seen_a, seen_b):
        assert order_messages(seen) == [
            ("order.status", "confirmed"),
            ("order.status", "preparing"),
            ("order.status", "out_for_delivery"),
            ("order.status", "delivered"),
        ]
        assert delivery_messages(seen) == [
            ("delivery.created", "waiting"),
            ("delivery.status", "on_the_way"),
        ]
