"""HTTP and domain metrics of the API, and their exposition.

The metric objects live here, at module level, so every part of the web layer
(routes, middleware, the WebSocket gateway) increments the same series.

Sanic runs several worker processes. Each process has its own counters, so a
scrape answered by one worker would show only that worker's share. When
``PROMETHEUS_MULTIPROC_DIR`` is set (``orderflow api --workers N`` does it for
N > 1, before any worker imports ``prometheus_client``), every process writes
its values to files in that directory and ``/metrics`` sums them with
``MultiProcessCollector`` — whichever worker answers, the numbers are the
totals.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "orderflow_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "orderflow_http_request_seconds",
    "Time from request routed to response ready, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ORDERS_PLACED = Counter(
    "orderflow_orders_placed_total",
    "Orders created by POST /api/v1/orders (idempotent replays not counted).",
)
ORDERS_REJECTED = Counter(
    "orderflow_orders_rejected_total",
    "Order requests refused, by reason: out_of_stock, unknown_item, invalid_body, "
    "idempotency_key_reused, rate_limited, overloaded.",
    ["reason"],
)
ADMISSION_BACKLOG = Gauge(
    "orderflow_admission_backlog",
    "Backlog (lag + pending) of the order pipeline's progressing consumer groups at the "
    "last reading of the admission control (the largest over live API processes).",
    multiprocess_mode="livemax",
)
ADMISSION_CLOSED = Gauge(
    "orderflow_admission_closed",
    "1 while an API process refuses new orders because the pipeline is behind.",
    multiprocess_mode="livemax",
)
ADMISSION_STALLED = Gauge(
    "orderflow_admission_stalled_groups",
    "Consumer groups with a backlog and no progress, left out of the admission backlog.",
    multiprocess_mode="livemax",
)
WEBSOCKET_CONNECTIONS = Gauge(
    "orderflow_websocket_connections",
    "Order-tracking WebSocket connections open now (summed over live processes).",
    multiprocess_mode="livesum",
)

WEBSOCKET_SENDS_BLOCKED = Gauge(
    "orderflow_websocket_sends_blocked",
    "Tracking WebSockets with a send waiting for a client that has not taken what it "
    "was sent (its buffers are full); each send ends sent, or the socket closed with "
    "1013 after ORDERFLOW_WS_SEND_TIMEOUT_SECONDS.",
    multiprocess_mode="livesum",
)

SSE_STREAMS = Gauge(
    "orderflow_sse_streams",
    "Server-Sent Events streams (order tracking and menu) open now (summed over live processes).",
    multiprocess_mode="livesum",
)
MENU_READS = Counter(
    "orderflow_menu_fanout_reads",
    "Menu reads of the stock fan-out (one per process and refresh, whatever the number of"
    " open pages).",
)


def multiprocess_enabled() -> bool:
    """True when this process writes its metrics to a shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


def render_latest() -> tuple[bytes, str]:
    """The exposition text for a scrape, and its content type.

    In multiprocess mode a fresh registry reads every process's files; it is
    not cached because new worker files appear when Sanic restarts a worker.
    """
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_this_process_dead() -> None:
    """Drop this process's live gauges (``livesum``) from the shared directory."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())
