"""The Sanic application factory: ``create_app(settings) -> Sanic``.

One factory for every way the app runs — ``orderflow api`` (one process per
Sanic worker calls it), ``orderflow demo`` and the tests — so they all serve
the same thing. Connections are opened per worker process, in listeners
(a Redis connection pool or a SQLite handle must not cross a fork), and are on
``app.ctx.publisher`` (a runtime ``App`` that publishes the outbox of placed orders,
never started as a worker), ``app.ctx.redis`` (its client), ``app.ctx.store`` and
``app.ctx.published_marks`` (the deferred "published" marks of the outbox rows the
process publishes, :mod:`orderflow.agents.publish_marks`; flushed at server stop,
before the store closes) before the first request.

Roles pick what one process serves, so one image can be deployed as separate
API and WebSocket-gateway Deployments:

* ``all``: REST + docs + browser UI + WebSocket tracking (the demo);
* ``api``: REST + docs + browser UI;
* ``gateway``: WebSocket tracking.

Every role also serves the Server-Sent Events streams of orders and stock
(``/api/v1/orders/<id>/events``, ``/api/v1/menu/events``) with its own fan-out.

With ``ORDERFLOW_BENCHMARK_NOOP_ROUTE=true`` the REST roles also serve
``POST /api/v1/benchmark/noop`` (``orderflow.web.routes.benchmark_noop``).

Every role serves ``/healthz``, ``/readyz`` and ``/metrics``.

Each server process freezes its long-lived objects out of CPython's full garbage
collections once it has started (``ORDERFLOW_GC_FREEZE``, :mod:`orderflow.web.heap_freeze`):
with a thousand open sockets a full collection otherwise stalls every one of them.
"""

from __future__ import annotations

from typing import Literal

from sanic import Sanic

from orderflow.agents.publish_marks import PublishedMarks
from orderflow.agents.settings import Settings, get_settings
from orderflow.agents.store_provider import published_marks_for
from orderflow.models.store import Store, open_store
from orderflow.runtime import App
from orderflow.web import (
    access,
    admission,
    correlation,
    cors,
    docs_ui,
    menu_events,
    openapi,
    ops,
    order_events,
    problems,
    rate_limit,
    request_guard,
    request_spans,
    security_headers,
    sse,
    store_problems,
    tracking,
    ui,
)
from orderflow.web.after_answer import AfterAnswer
from orderflow.web.heap_freeze import HeapFreeze
from orderflow.web.metrics import mark_this_process_dead
from orderflow.web.routes import benchmark_noop, cancel, health, menu, metrics, orders

Role = Literal["all", "api", "gateway"]
ROLES: tuple[Role, ...] = ("all", "api", "gateway")
APP_NAME = "orderflow"


async def _open_connections(app: Sanic) -> None:
    settings: Settings = app.ctx.settings
    if not settings.redis_url:
        raise RuntimeError(
            "ORDERFLOW_REDIS_URL is not set: the API needs a Redis (or Valkey) server"
        )
    # A bounded, blocking pool: under a burst of orders a request waits a moment for
    # a connection instead of failing its publish (which the outbox relay would
    # then have to redo seconds later).
    publisher = App("api", broker=settings.redis_url, settings=settings, pool_size=200)
    app.ctx.publisher = publisher
    app.ctx.redis = await publisher.connect()
    app.ctx.store = await open_store(settings.store_url, deadline=settings.store_deadline_seconds)
    app.ctx.published_marks = published_marks_for(app.ctx.store, settings)
    app.ctx.after_answer = AfterAnswer()


async def _close_connections(app: Sanic) -> None:
    after_answer: AfterAnswer | None = getattr(app.ctx, "after_answer", None)
    if after_answer is not None:  # the last publishes, before their publisher closes
        await after_answer.drain(app.ctx.settings.store_deadline_seconds)
    marks: PublishedMarks | None = getattr(app.ctx, "published_marks", None)
    if marks is not None:
        await marks.close()
    store: Store | None = getattr(app.ctx, "store", None)
    if store is not None:
        await store.close()
    publisher: App | None = getattr(app.ctx, "publisher", None)
    if publisher is not None:
        await publisher.stop()  # never started: closes its connections
    mark_this_process_dead()


def create_app(settings: Settings | None = None, *, role: Role = "all") -> Sanic:
    """Build the app for ``role``; nothing connects until the server starts."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    settings = settings or get_settings()
    app = Sanic(APP_NAME, configure_logging=False, request_class=request_guard.GuardedRequest)
    app.ctx.settings = settings
    app.ctx.role = role
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.ACCESS_LOG = False  # orderflow.web.access writes one JSON line per request instead
    app.config.FALLBACK_ERROR_FORMAT = "json"
    # Longer than the store deadline (Settings checks): our 503 comes first, not Sanic's.
    app.config.RESPONSE_TIMEOUT = settings.http_response_timeout_seconds  # type: ignore[assignment]
    app.config.KEEP_ALIVE_TIMEOUT = 75  # longer than typical load-balancer idle timeouts
    app.config.REQUEST_TIMEOUT = settings.http_request_timeout_seconds  # the head; the body: below

    openapi.setup(app)
    problems.install(app)
    store_problems.install(app)
    correlation.install(app)
    request_spans.install(app)
    access.install(app)
    cors.install(app, settings.cors_origins)
    request_guard.install(app, body_timeout=settings.http_request_timeout_seconds)
    security_headers.install(app)
    admission.install(app, settings)  # before the rate limit: a refused order spends no token
    rate_limit.install(app, settings)

    health.register(app)
    if not settings.admin_port:  # else /metrics is on the admin port only (orderflow api)
        metrics.register(app)
    if role in ("all", "api"):
        menu.register(app)
        orders.register(app)
        cancel.register(app)
        ui.register(app)
        docs_ui.register(app)
        ops.register(app, settings)
        if settings.benchmark_noop_route:  # benchmarks/load.py's yardstick, off by default
            benchmark_noop.register(app)
    if role in ("all", "gateway"):
        tracking.register(app)
    else:
        tracking.register_hub(app)  # the order event streams need the fan-out, not the socket
    # Every role serves the event streams: they are plain HTTP under /api/v1, which the
    # chart's Ingress routes to the API, and a single-role gateway serves them too.
    sse.install(app, settings.sse_max_streams)
    order_events.register(app)
    menu_events.register(app)

    app.register_listener(_open_connections, "before_server_start")
    app.register_listener(_close_connections, "after_server_stop")
    if settings.gc_freeze:
        app.register_listener(_freeze_heap, "after_server_start")
        app.register_listener(_thaw_heap, "before_server_stop")
    return app


async def _freeze_heap(app: Sanic) -> None:
    """Last start-up step: what start-up built stays out of every full collection."""
    settings: Settings = app.ctx.settings
    app.ctx.heap_freeze = HeapFreeze(settings.gc_thaw_after_closed_connections)
    app.ctx.heap_freeze.install()


async def _thaw_heap(app: Sanic) -> None:
    heap_freeze: HeapFreeze | None = getattr(app.ctx, "heap_freeze", None)
    if heap_freeze is not None:
        heap_freeze.uninstall()
