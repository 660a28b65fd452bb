"""One order of ``latency.py``: placed over HTTP, then followed on its tracking
WebSocket from the snapshot to ``delivered``, with the client that places it.

Apart from ``latency.py`` (which runs the stacks, alternates them and reports) so that
what one order measures, and how, reads on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from benchmarks.keepalive import SequentialClient
from benchmarks.stack import Stack, StackError, log, order_id_of

HttpClient = httpx.AsyncClient | SequentialClient
"""What places the orders: both have ``post(path, json=)`` and ``get(path)``, and their
answers ``status_code``, ``text`` and ``json()``."""


def http_client(kind: str, stack: Stack) -> HttpClient:
    if kind == "httpx":
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=30.0)
    return SequentialClient("127.0.0.1", stack.port)


@dataclass
class Sample:
    """What one order measured (milliseconds from t0; None when it did not happen)."""

    post_ms: float
    first_update_ms: float | None = None
    delivered_ms: float | None = None
    first_news_ms: float | None = None
    snapshot_ms: float | None = None
    order_id: str = ""
    snapshot_status: str = ""
    seen: list[str] = field(default_factory=list)
    reported_to_ws_ms: list[float] = field(default_factory=list)


def parse_at(at: str) -> float | None:
    """Epoch seconds of an ISO-8601 ``at`` (``...Z`` or with an offset)."""
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


async def measure_one(
    client: HttpClient,
    ws_base: str,
    item_id: str,
    deadline_s: float,
    check_alive: Callable[[], None] | None = None,
) -> Sample:
    """Place one order and follow it on the WebSocket; ``check_alive`` runs every second
    while waiting, so a crashed stack process fails the run at once instead of timing out."""
    from websockets.asyncio.client import connect

    body = {"lines": [{"item_id": item_id, "quantity": 1}]}
    t0 = time.perf_counter()
    response = await client.post("/api/v1/orders", json=body)
    post_ms = (time.perf_counter() - t0) * 1000
    if response.status_code != 201:
        raise StackError(f"POST answered {response.status_code}: {response.text[:300]}")
    order_id = order_id_of(answer := response.json())
    if order_id is None:
        raise StackError(f"201 answer without an order id: {answer!r}"[:300])
    sample = Sample(post_ms=post_ms, order_id=order_id)
    async with connect(f"{ws_base}/ws/v1/order-tracking/{order_id}", open_timeout=10) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        sample.snapshot_ms = (time.perf_counter() - t0) * 1000
        if snapshot.get("type") != "snapshot":
            raise StackError(f"first WebSocket message is not a snapshot: {snapshot!r}")
        sample.snapshot_status = str(snapshot.get("status"))
        if sample.snapshot_status != "created":
            sample.first_news_ms = (time.perf_counter() - t0) * 1000
        if sample.snapshot_status == "delivered":
            sample.delivered_ms = (time.perf_counter() - t0) * 1000
            return sample
        end = time.monotonic() + deadline_s
        while sample.delivered_ms is None:
            remaining = end - time.monotonic()
            if remaining <= 0:
                log(
                    f"order {order_id}: not delivered within {deadline_s:.0f}s "
                    f"(snapshot {sample.snapshot_status!r}, then {sample.seen})"
                )
                return sample
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=min(remaining, 1.0))
            except TimeoutError:
                if check_alive is not None:
                    check_alive()
                continue
            received_ms = (time.perf_counter() - t0) * 1000
            received_wall = time.time()
            message = json.loads(raw)
            sample.seen.append(f"{message.get('type')}:{message.get('status')}")
            if message.get("type") != "order.status":
                continue
            if sample.first_update_ms is None:
                sample.first_update_ms = received_ms
            if sample.first_news_ms is None:
                sample.first_news_ms = received_ms
            stamped = parse_at(str(message.get("at", "")))
            if stamped is not None:
                sample.reported_to_ws_ms.append((received_wall - stamped) * 1000)
            if message.get("status") == "delivered":
                sample.delivered_ms = received_ms
    return sample
