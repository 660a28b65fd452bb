"""The tracking WebSocket's keep-alive, against a real gateway process and Redis.

With the ping interval and timeout shortened (``ORDERFLOW_WS_PING_INTERVAL`` /
``_TIMEOUT``), a peer that completes the handshake and then never answers a protocol
ping gets the snapshot, then pings, then a close 1011, and its TCP connection is
dropped: a dead browser tab does not hold a socket and a subscription forever.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from pathlib import Path

from orderflow.models.documents import OrderLineRequest
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store
from orderflow.runtime.localserver import LocalRedisServer
from tests.web.api_process import ApiProcess

RECEIVE_GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


def read_frames_until_closed(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Read server frames (unmasked) until the server closes the TCP connection.

    Pings are read but never answered: this is what a dead peer looks like.
    """
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    frames: list[tuple[int, bytes]] = []
    while len(buffer) >= 2:
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = struct.unpack(">H", buffer[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack(">Q", buffer[2:10])[0], 10
        frames.append((opcode, buffer[offset : offset + length]))
        buffer = buffer[offset + length :]
    return frames


async def test_keepalive_drops_a_peer_that_stops_answering_pings(
    redis_server: LocalRedisServer, store_url: str, store: Store, tmp_path: Path
) -> None:
    impatient = ApiProcess(
        redis_url=redis_server.url,
        store_url=store_url,
        log_path=tmp_path / "gateway-keepalive.log",
        extra_env={"ORDERFLOW_WS_PING_INTERVAL": "0.3", "ORDERFLOW_WS_PING_TIMEOUT": "0.5"},
    )
    await asyncio.to_thread(impatient.start)
    try:
        placed = await store.place_order(
            [OrderLineRequest(item_id=DEMO_MENU[0].id, quantity=1)],
            idempotency_key=None,
            request_hash=None,
            events=lambda order: [],
        )
        order = placed.order

        def dead_peer() -> tuple[bytes, list[tuple[int, bytes]]]:
            with socket.create_connection(
                ("127.0.0.1", impatient.port), timeout=RECEIVE_GUARD
            ) as sock:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    (
                        f"GET /ws/v1/order-tracking/{order.id} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1:{impatient.port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    ).encode()
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1)
                return head, read_frames_until_closed(sock)

        head, frames = await asyncio.to_thread(dead_peer)
    finally:
        await asyncio.to_thread(impatient.stop)

    assert head.startswith(b"HTTP/1.1 101")
    opcodes = [opcode for opcode, _ in frames]
    assert opcodes[0] == 0x1 and json.loads(frames[0][1])["type"] == "snapshot"
    assert 0x9 in opcodes  # the server pinged
    close_payloads = [payload for opcode, payload in frames if opcode == 0x8]
    assert close_payloads and struct.unpack(">H", close_payloads[0][:2])[0] == 1011
