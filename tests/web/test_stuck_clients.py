"""Tracking sockets whose client never reads hold up nobody else (issue 13, point 3).

A real gateway process (``orderflow api`` on a free port, the test Valkey, a SQLite
file shared with the test). ``STUCK`` clients open a socket with the smallest
receive buffer the kernel allows, send pings and never read a byte, so their pongs
fill the kernel's buffers and the transport's (64 KiB high-water mark): the gateway
then has a send waiting on each of them, which it reports in
``orderflow_websocket_sends_blocked`` (the test waits for that count, no sleep).
While all of them are blocked, every change of the order is published, and:

* each of the ``READERS`` well-behaved clients of the same order receives every
  change, in order (counts and equality only, no timings);
* the stuck sockets are still blocked once the readers have everything: nothing
  waited for them (the send timeout, ``SEND_TIMEOUT`` s, is far longer than
  handing 7 changes to 3 readers; it is a margin, not a measured bound);
* then the gateway drops each stuck socket as documented (send timeout -> 1013; the
  close frame may be lost to the reset a close with unread input causes): its
  connection count falls back to the readers, the blocked count to 0, and the
  readers are still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM
from orderflow.models.documents import utc_now
from orderflow.models.events import DeliveryCreated
from orderflow.models.store import Store
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.records import Record
from tests.hardening.raw_websocket import (
    GUARD_SECONDS,
    OPCODE_CLOSE,
    FrameReader,
    client_frame,
    close_code,
)
from tests.web.api_process import ApiProcess, metric_value
from tests.web.test_tracking import (
    delivery_status,
    order_status,
    place_order,
    publish,
    receive,
    tracking_url,
)

READERS = 3
STUCK = 3
SEND_TIMEOUT = 20.0  # seconds a blocked send waits before the socket is closed (1013)
PINGS = 50_000  # ~1 MB of pings: their pongs are far more than a stuck socket's buffers hold
PING = json.dumps({"type": "ping"}, separators=(",", ":")).encode()
WAIT_GUARD = 60.0  # seconds; a guard against a hang, not a latency assertion
BLOCKED = "orderflow_websocket_sends_blocked"
CONNECTIONS = "orderflow_websocket_connections"


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('stuck-clients-store') / 'orderflow.db'}"


@pytest.fixture(scope="module")
def gateway(
    redis_server: LocalRedisServer, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    log = tmp_path_factory.mktemp("stuck-clients-logs") / "gateway.log"
    env = {
        # The pings that fill a stuck client's buffers are not cut off by the budget.
        "ORDERFLOW_WS_MESSAGE_BURST": "1000000000",
        "ORDERFLOW_WS_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
    }
    with ApiProcess(
        redis_url=redis_server.url, store_url=store_url, log_path=log, extra_env=env
    ) as process:
        yield process


def stuck_client(port: int, path: str) -> socket.socket:
    """Upgrade with a minimal receive buffer, then send ``PINGS`` pings, reading nothing.

    The 101 head is read byte by byte so nothing after it (the snapshot, the pongs)
    is taken off the socket. Sending stops early when the gateway stops taking input
    (it pauses reading while its pong send is blocked): that is the point.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    sock.settimeout(GUARD_SECONDS)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        assert byte, f"closed during the upgrade: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.settimeout(2.0)  # how long a full input buffer may stall the send; not asserted
    # A timeout: the gateway stopped reading this client, its output is blocked.
    with contextlib.suppress(TimeoutError):
        sock.sendall(client_frame(PING) * PINGS)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[int, int | None]:
    """What the gateway had sent (frames) before it dropped the socket, and its close code
    (None: the close frame was lost to the reset of a socket closed with unread input)."""
    sock.settimeout(WAIT_GUARD)
    frames = FrameReader(sock)
    count = 0
    with sock:
        while (frame := frames.next_data()) is not None:
            if frame[0] == OPCODE_CLOSE:
                return count, close_code(frame[1])
            count += 1
    return count, None


async def wait_for_metric(client: httpx.AsyncClient, name: str, value: float) -> None:
    deadline = time.monotonic() + WAIT_GUARD
    while (current := await metric_value(client, name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed {current}, expected {value}"
        await asyncio.sleep(0.05)


def all_changes(order_id: str) -> list[tuple[str, Record]]:
    """Every tracking event of a delivered order, in the order the services publish them."""
    delivery_id = uuid.uuid4().hex
    created = DeliveryCreated(delivery_id=delivery_id, order_id=order_id, created_at=utc_now())
    return [
        (ORDERS_STREAM, order_status(order_id, "confirmed", "created")),
        (ORDERS_STREAM, order_status(order_id, "preparing", "confirmed")),
        (ORDERS_STREAM, order_status(order_id, "out_for_delivery", "preparing")),
        (DELIVERIES_STREAM, created),
        (DELIVERIES_STREAM, delivery_status(order_id, delivery_id, "on_the_way", "waiting")),
        (DELIVERIES_STREAM, delivery_status(order_id, delivery_id, "delivered", "on_the_way")),
        (ORDERS_STREAM, order_status(order_id, "delivered", "out_for_delivery")),
    ]


EXPECTED = [
    ("order.status", "confirmed"),
    ("order.status", "preparing"),
    ("order.status", "out_for_delivery"),
    ("delivery.created", "waiting"),
    ("delivery.status", "on_the_way"),
    ("delivery.status", "delivered"),
    ("order.status", "delivered"),
]


async def receive_all(ws: ClientConnection) -> list[tuple[str, str]]:
    received: list[tuple[str, str]] = []
    while len(received) < len(EXPECTED):
        message: dict[str, Any] = await receive(ws)
        received.append((message["type"], message["status"]))
    return received


async def test_readers_get_every_change_while_stuck_clients_are_blocked_then_closed(
    gateway: ApiProcess, store: Store, redis_client: aioredis.Redis
) -> None:
    order = await place_order(store)
    path = f"/ws/v1/order-tracking/{order.id}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=GUARD_SECONDS) as http:
        readers = [
            await connect(tracking_url(gateway, order.id), open_timeout=GUARD_SECONDS)
            for _ in range(READERS)
        ]
        try:
            for ws in readers:
                assert (await receive(ws))["type"] == "snapshot"
            stuck = await asyncio.gather(
                *(asyncio.to_thread(stuck_client, gateway.port, path) for _ in range(STUCK))
            )
            await wait_for_metric(http, BLOCKED, STUCK)

            previous = None
            for stream, change in all_changes(order.id):
                if previous is not None and stream != previous:
                    # Entry ids order two streams only to the millisecond (the gateway
                    # cannot order a tie: docs/realtime.md); between the services a
                    # change of stream is a whole hop, so the test leaves a tick too.
                    await asyncio.sleep(0.002)
                await publish(redis_client, stream, change)
                previous = stream
            received = await asyncio.gather(*(receive_all(ws) for ws in readers))
            assert received == [EXPECTED] * READERS
            # Every reader has everything while every stuck socket still waits.
            assert await metric_value(http, BLOCKED) == STUCK

            # The gateway drops them after the send timeout (read nothing before: reading
            # would unblock them); then what they hold ends in a close or a reset.
            await wait_for_metric(http, CONNECTIONS, READERS)
            assert await metric_value(http, BLOCKED) == 0
            closed = await asyncio.gather(
                *(asyncio.to_thread(read_until_closed, sock) for sock in stuck)
            )
            assert all(frames > 0 and code in (1013, None) for frames, code in closed), closed
            for ws in readers:  # still served after the stuck ones went
                await ws.send(json.dumps({"type": "ping"}))
                assert (await receive(ws))["type"] == "pong"
        finally:
            for ws in readers:
                await ws.close()
