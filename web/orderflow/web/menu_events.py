"""Live stock over Server-Sent Events: ``GET /api/v1/menu/events``.

Every open shop page subscribes here instead of polling ``GET /api/v1/menu``. The first
event is the levels this process already holds (no store read per page), then one
``stock`` event per change, each with the absolute level of every item:
``{"type": "stock", "items": [{"id": "margherita", "stock": 41}, ...]}``. No ``id:``:
each event is the whole state, so a reconnecting page needs no resume, its first event
heals whatever it missed. The process's :class:`~orderflow.web.menu_hub.MenuHub` is
started and stopped here with the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import String

from orderflow.agents.settings import Settings
from orderflow.runtime import App
from orderflow.web import sse
from orderflow.web.menu_hub import MenuHub, StockLevels, StockSubscription
from orderflow.web.openapi import problem_content

ROUTE = "/api/v1/menu/events"
HUB_READY_TIMEOUT = 10.0


def stock_event(levels: StockLevels) -> bytes:
    items = [{"id": item_id, "stock": stock} for item_id, stock in levels.items()]
    return sse.encode_event("stock", {"type": "stock", "items": items})


async def menu_events(request: Request) -> HTTPResponse | None:
    """Stream the stock levels: the cached ones first, then each change."""
    settings: Settings = request.app.ctx.settings
    hub: MenuHub | None = getattr(request.app.ctx, "menu_hub", None)
    if hub is None or not await hub.wait_ready(HUB_READY_TIMEOUT):
        return sse.stream_unavailable(request, "Live stock is not available yet; retry shortly.")
    streams: sse.OpenStreams = request.app.ctx.open_streams
    stop = streams.admit()
    if stop is None:
        return sse.stream_unavailable(request, sse.FULL)
    try:
        with hub.subscribe() as subscription:
            response = await request.respond(content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
            stream = sse.EventStream(request, response, settings.sse_send_timeout_seconds)
            if await stream.send(f"retry: {settings.sse_retry_ms}\n\n".encode()):
                await sse.pump(
                    stream, _next_levels(subscription), stop, settings.sse_heartbeat_seconds
                )
            with contextlib.suppress(Exception):  # the client may be gone already
                await response.eof()
    finally:
        streams.release(stop)
    return None


def _next_levels(
    subscription: StockSubscription,
) -> Callable[[], Coroutine[Any, Any, bytes | None]]:
    async def next_levels() -> bytes | None:
        return stock_event(await subscription.next())

    return next_levels


async def _start_hub(app: Sanic) -> None:
    settings: Settings = app.ctx.settings
    if not settings.redis_url:
        return  # the tracking hub already logged it; /api/v1/menu/events answers 503
    follower_app = App("gateway-menu", broker=settings.redis_url, settings=settings)
    hub = MenuHub(
        follower_app, lambda: app.ctx.store.list_menu(),
        min_interval=settings.menu_refresh_interval_seconds,
    )  # fmt: skip
    app.ctx.menu_hub = hub
    hub.start()


async def _stop_hub(app: Sanic) -> None:
    hub: MenuHub | None = getattr(app.ctx, "menu_hub", None)
    if hub is not None:
        await hub.stop()
        with contextlib.suppress(Exception):
            await hub.app.stop()


def register(app: Sanic) -> None:
    """Add the route (documented in OpenAPI) and the hub's start/stop listeners."""

    async def menu_events_route(request: Request) -> HTTPResponse | None:  # one per app
        return await menu_events(request)

    documented = openapi.definition(
        operation="menuEvents",
        summary="Follow the stock levels (Server-Sent Events)",
        description=(
            "A text/event-stream of `stock` events, each with every item's current stock: "
            '`{"type": "stock", "items": [{"id": "margherita", "stock": 41}]}`. The first '
            "comes at once, then one per change (orders, refills, set-stock). A `: heartbeat` "
            "comment every `ORDERFLOW_SSE_HEARTBEAT_SECONDS` of silence. See docs/realtime.md."
        ),
        tag="menu",
    )(menu_events_route)
    documented = openapi.response(
        200, {"text/event-stream": String()}, "The event stream (until the client leaves)"
    )(documented)
    documented = openapi.response(
        503, problem_content(), "Live stock not available, or too many open streams"
    )(documented)
    app.add_route(documented, ROUTE, methods=["GET"], name="menu_events")
    app.register_listener(_start_hub, "after_server_start")
    app.register_listener(_stop_hub, "before_server_stop")
