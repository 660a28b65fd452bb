"""The orders pipeline's figures for ``benchmarks/scaling.py``.

The pipeline is the reference system's orders service, run as it is deployed:
``orderflow worker orderflow.agents.orders:app`` processes consuming
``order-status-stream``; each report is one store transaction (the order's status and
its outbox rows, SQLite here) and one publish of ``order.status_updated`` to
``orders-stream``. Every figure moves each of ``--orders`` orders one status further
(``confirmed``, then ``preparing``, ...), so every report is a real change, never a
stale no-op. The reports are appended once the workers' consumers are registered and
blocked on the empty stream; the clock starts before the first ``XADD``.

On one node the system's topics are single streams (its default); on the cluster they
are partitioned by order id (``ORDERFLOW_TOPIC_PARTITIONS``, the same count as the no-op
figures), so the reports and the status updates spread over the three masters.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from benchmarks.scaling_measure import (
    CpuClock,
    client_for,
    drained,
    figure,
    group_counts,
    wait_for,
    workers,
)
from orderflow.agents.topics import ORDER_STATUS_STREAM, ORDERS_GROUP, topic_streams
from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import OrderStatusReported
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import open_store
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.partitions import partition_of

ARGV = [sys.executable, "-m", "orderflow.agents.cli", "worker", "orderflow.agents.orders:app"]
STEPS = ("confirmed", "preparing", "out_for_delivery", "delivered")  # one per figure


async def place_orders(store_url: str, count: int) -> list[str]:
    """``count`` one-line orders in a fresh store (status ``created``)."""
    store = await open_store(store_url)
    try:
        await store.seed_menu(DEMO_MENU)
        item = DEMO_MENU[0].id
        await store.set_stock(item, count)
        line = [OrderLineRequest(item_id=item, quantity=1)]
        ids = []
        for _ in range(count):
            placed = await store.place_order(
                line, idempotency_key=None, request_hash=None, events=lambda order: []
            )
            ids.append(placed.order.id)
        return ids
    finally:
        await store.close()


def consumers_ready(client: redis.Redis, streams: tuple[str, ...], count: int) -> bool:
    """Every worker's consumer is registered on every partition (it has read once)."""
    try:
        return all(len(client.xinfo_consumers(s, ORDERS_GROUP)) >= count for s in streams)
    except redis.ResponseError:  # no stream or no group yet
        return False


def report(
    client: redis.Redis, order_ids: list[str], status: str, streams: tuple[str, ...]
) -> None:
    """One report per order, into its order id's partition (as the producers place it)."""
    at = utc_now()
    for start in range(0, len(order_ids), 1000):
        pipe = client.pipeline(transaction=False)
        for order_id in order_ids[start : start + 1000]:
            value = OrderStatusReported(order_id=order_id, status=status, at=at)
            envelope = Envelope.new(value, source="bench-scaling", key=order_id)
            stream = streams[partition_of(order_id, len(streams))]
            pipe.xadd(stream, envelope.to_fields())  # type: ignore[arg-type]
        pipe.execute()


def measure_orders(
    url: str, server_pids: list[int], layout: str, count: int, step: int,
    order_ids: list[str], store_url: str, log_dir: Path, partitions: int,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One figure; ``extra_env``: more ``ORDERFLOW_*`` variables for the workers."""
    client = client_for(url)
    events = len(order_ids)
    streams = topic_streams(ORDER_STATUS_STREAM, partitions)
    env = {"ORDERFLOW_REDIS_URL": url, "ORDERFLOW_STORE_URL": store_url,
           "ORDERFLOW_DATA_DIR": str(log_dir),
           "ORDERFLOW_TOPIC_PARTITIONS": str(partitions), **(extra_env or {})}  # fmt: skip
    try:
        client.flushall()
        with workers(ARGV, count, env, log_dir, "orders") as pids:
            wait_for(lambda: consumers_ready(client, streams, count), f"{count} workers reading")
            clock = CpuClock(pids, server_pids)
            clock.start()
            report(client, order_ids, STEPS[step], streams)
            wait_for(lambda: drained(client, list(streams), events), "every report acknowledged")
            clock.stop()
            delivered, pending, _ = group_counts(client, list(streams))
    finally:
        client.close()
    return figure("orders", layout, count, events, len(streams), clock, delivered, pending)


def prepare(store_url: str, count: int) -> list[str]:
    return asyncio.run(place_orders(store_url, count))
