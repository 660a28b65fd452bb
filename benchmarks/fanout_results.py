"""What benchmarks/fanout.py's readers got, against what the services published.

Why from the streams: "published" is the moment the orders or delivery service
appended the update (its stream entry id: the server's millisecond clock, the
same machine's clock as the readers' receive times), so a change's fan-out time
covers the gateway's read, its reorder window (cluster only) and every socket send, and nothing
the benchmark's own bookkeeping adds. Every tracking event of an order (order
status updated, delivery created, delivery status updated) is one change; a
reader has received it when it holds a message of the same kind and status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from benchmarks.stack import percentile
from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM

TRACKING_EVENTS = {
    b"order.status_updated.v1": "order",
    b"delivery.created.v1": "delivery",
    b"delivery.status_updated.v1": "delivery",
}


@dataclass(frozen=True)
class Published:
    kind: str  # "order" or "delivery": the message types order.status / delivery.*
    status: str
    at_ms: int


async def published_for(redis: Any, order_id: str) -> list[Published]:
    """The order's tracking events on both streams, oldest first."""
    found: list[Published] = []
    for stream in (ORDERS_STREAM, DELIVERIES_STREAM):
        if not await redis.exists(stream):
            continue
        for entry_id, fields in await redis.xrange(stream):
            kind = TRACKING_EVENTS.get(fields.get(b"event_type", b""))
            if kind is None:
                continue
            payload = json.loads(fields.get(b"payload") or b"{}")
            if payload.get("order_id") == order_id:
                millis = int(entry_id.split(b"-")[0])
                found.append(Published(kind, str(payload.get("status")), millis))
    return sorted(found, key=lambda p: p.at_ms)


def _kind_of(message_type: str) -> str:
    return "order" if message_type == "order.status" else "delivery"


def summarize(
    results: list[list[dict[str, Any]]],
    published: dict[str, list[Published]],
    phase_a: list[str],
    phase_b: list[str],
    *,
    started_ms: int,
) -> dict[str, Any]:
    """received_all, and fan-out percentiles per change (last reader) and per message.

    Changes published before ``started_ms`` (none: the orders wait at ``created``
    until the benchmark moves them) are not expected from the readers.
    """
    readers = [reader for process in results for reader in process]
    missing = 0
    last_reader: dict[tuple[str, int], float] = {}  # (order, change index) -> latest receive
    per_message: dict[str, list[float]] = {"a": [], "b": []}
    for reader in readers:
        order_id = reader["order_id"]
        phase = "a" if order_id in phase_a else "b"
        got: dict[tuple[str, str], float] = {}
        for message_type, status, received in reader["messages"]:
            got.setdefault((_kind_of(str(message_type)), str(status)), float(received))
        for index, change in enumerate(published[order_id]):
            if change.at_ms < started_ms:
                continue
            received = got.get((change.kind, change.status))
            if received is None:
                missing += 1
                continue
            latency = received * 1000 - change.at_ms
            per_message[phase].append(latency)
            key = (order_id, index)
            last_reader[key] = max(last_reader.get(key, latency), latency)
    by_phase: dict[str, list[float]] = {"a": [], "b": []}
    for (order_id, _), latency in last_reader.items():
        by_phase["a" if order_id in phase_a else "b"].append(latency)
    changes = by_phase["a"] + by_phase["b"]

    def p(values: list[float], pct: float) -> float | None:
        return round(percentile(values, pct), 1) if values else None

    return {
        "received_all": missing == 0 and bool(changes),
        "missing_messages": missing,
        "changes": len(changes),
        "fanout_p50_ms": p(changes, 50),
        "fanout_p99_ms": p(changes, 99),
        "fanout_p99_ms_without_non_readers": p(by_phase["a"], 99),
        "fanout_p99_ms_with_non_readers": p(by_phase["b"], 99),
        "message_p99_ms_without_non_readers": p(per_message["a"], 99),
        "message_p99_ms_with_non_readers": p(per_message["b"], 99),
        "messages_received": sum(len(r["messages"]) for r in readers),
    }
