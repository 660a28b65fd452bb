"""Order tracking over Server-Sent Events: ``GET /api/v1/orders/<order_id>/events``.

The same semantics as the WebSocket (:mod:`orderflow.web.tracking`), over plain HTTP:
subscribe to this process's :class:`~orderflow.web.fanout.TrackingHub` first, then read
the snapshot, then stream only what is newer (the same :class:`OrderView` filter).

Every event's ``id:`` is the client's position in the order's lifecycle,
``<order rank>.<delivery rank + 1>`` (``2.0``: preparing, no delivery yet; ``3.1``: out
for delivery, delivery waiting; ``5.0``: cancelled, which outranks every status). Both
parts only grow, so the position says exactly
what the client has seen. A browser that reconnects sends it back as
``Last-Event-ID``; the stream then starts with the changes after that position, taken
from the stored history (as ``order.status`` / ``delivery.*`` events, each with its
position), instead of a snapshot: nothing missed, nothing repeated. Without the header,
or with one that is not a position, the first event is a ``snapshot``.

Errors are answered before the stream starts, as problem+json: 400 malformed id,
404 unknown order, 503 (Retry-After) when the fan-out or store is not available or the
process has ``sse_max_streams`` open.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import String

from orderflow.agents.settings import Settings
from orderflow.models.documents import (
    DELIVERY_STATUSES,
    ORDER_STATUS_RANKS,
    STATUS_OF_ORDER_RANK,
)
from orderflow.web import sse
from orderflow.web.fanout import DeliveryUpdate, OrderUpdate, Subscription, TrackingHub, Update
from orderflow.web.openapi import order_id_parameter, problem_content
from orderflow.web.order_view import OrderView, load_view
from orderflow.web.problems import problem, problem_type, request_ext
from orderflow.web.store_problems import store_unavailable
from orderflow.web.tracking import HUB_READY_TIMEOUT
from orderflow.web.validation import is_plausible_order_id

log = logging.getLogger(__name__)

ROUTE = "/api/v1/orders/<order_id:str>/events"
_POSITION = re.compile(r"(\d{1,2})\.(\d{1,2})")


def position_of(view: OrderView) -> str:
    """The event id: what a client told this view has seen (see the module)."""
    return f"{view.order_rank}.{view.delivery_rank + 1}"


def parse_position(text: str | None) -> tuple[int, int] | None:
    """``(order rank, delivery rank + 1)`` from a ``Last-Event-ID``; None if it is not one."""
    match = _POSITION.fullmatch(text.strip()) if text else None
    if match is None:
        return None
    order_rank, delivery_rank = int(match[1]), int(match[2]) - 1
    if order_rank not in STATUS_OF_ORDER_RANK or delivery_rank >= len(DELIVERY_STATUSES):
        return None
    return order_rank, delivery_rank


def resumed_view(full: OrderView, order_rank: int, delivery_rank: int) -> OrderView:
    """A view of what the client has already seen: ``full`` cut back to its position."""
    seen = OrderView(full.order_id)
    seen.status = STATUS_OF_ORDER_RANK[order_rank]
    seen.history = [h for h in full.history if ORDER_STATUS_RANKS[h["status"]] <= order_rank]
    if delivery_rank >= 0 and full.delivery_id is not None:
        seen.delivery_id = full.delivery_id
        seen.delivery_status = DELIVERY_STATUSES[delivery_rank]
        seen.delivery_history = [
            h
            for h in full.delivery_history
            if DELIVERY_STATUSES.index(h["status"]) <= delivery_rank
        ]
    return seen


def missed_updates(full: OrderView) -> list[Update]:
    """Every step of ``full`` as an update, in time order (an order step before the
    delivery step of the same instant: the delivery is created by the order's step)."""
    steps: list[tuple[str, int, Update]] = [
        (h["at"], 0, OrderUpdate(full.order_id, h["status"], h["at"])) for h in full.history
    ]
    if full.delivery_id is not None:
        steps += [
            (h["at"], 1, DeliveryUpdate(full.order_id, full.delivery_id, h["status"], h["at"]))
            for h in full.delivery_history
        ]
    return [update for _, _, update in sorted(steps, key=lambda step: (step[0], step[1]))]


async def order_events(request: Request, order_id: str) -> HTTPResponse | None:
    """Stream the order's snapshot (or what the client missed), then its changes."""
    app = request.app
    settings: Settings = app.ctx.settings
    if not is_plausible_order_id(order_id):
        return problem(
            400,
            "Malformed order id",
            "Order ids are 32 lowercase hexadecimal digits.",
            problem_type("malformed-order-id"),
            **request_ext(request),
        )
    hub: TrackingHub | None = getattr(app.ctx, "tracking_hub", None)
    if hub is None or not await hub.wait_ready(HUB_READY_TIMEOUT):
        return sse.stream_unavailable(request, "Order tracking is not available yet; retry.")
    streams: sse.OpenStreams = app.ctx.open_streams
    stop = streams.admit()
    if stop is None:
        return sse.stream_unavailable(request, sse.FULL)
    try:
        with hub.subscribe(order_id) as subscription:
            try:
                full = await load_view(app, order_id)
            except Exception:  # whatever the store raised: nothing was sent yet, say so
                log.exception("event stream: snapshot failed for order %s", order_id)
                return store_unavailable(request, "The order store is not available; retry.")
            if full is None:
                return problem(
                    404,
                    "Order not found",
                    f"No order with id {order_id}.",
                    problem_type("order-not-found"),
                    **request_ext(request),
                )
            response = await request.respond(content_type=sse.CONTENT_TYPE, headers=sse.HEADERS)
            stream = sse.EventStream(request, response, settings.sse_send_timeout_seconds)
            first, view = _opening(full, parse_position(request.headers.get("last-event-id")))
            if not await stream.send(f"retry: {settings.sse_retry_ms}\n\n".encode() + first):
                return None
            await sse.pump(
                stream, _next_event(view, subscription), stop, settings.sse_heartbeat_seconds
            )
            with contextlib.suppress(Exception):  # the client may be gone already
                await response.eof()
    finally:
        streams.release(stop)
    return None


def _opening(full: OrderView, position: tuple[int, int] | None) -> tuple[bytes, OrderView]:
    """The first bytes of the stream and the view they leave the client with."""
    if position is None:
        return sse.encode_event("snapshot", full.snapshot_message(), position_of(full)), full
    view = resumed_view(full, *position)
    chunks = []
    for update in missed_updates(full):
        message = view.apply(update)
        if message is not None:
            chunks.append(sse.encode_event(message["type"], message, position_of(view)))
    return b"".join(chunks), view


def _next_event(
    view: OrderView, subscription: Subscription
) -> Callable[[], Coroutine[Any, Any, bytes | None]]:
    """The pump's source: the next update that is newer than what the client has."""

    async def next_event() -> bytes | None:
        while True:
            update = await subscription.get()
            if update is None:  # too slow: the client reconnects with Last-Event-ID
                return None
            message = view.apply(update)
            if message is not None:
                return sse.encode_event(message["type"], message, position_of(view))

    return next_event


def register(app: Sanic) -> None:
    """Add the route, documented in OpenAPI (needs the tracking hub of this process)."""

    # A function of its own per app: the decorators below record on the function, and
    # every create_app (tests build many) would otherwise add its parameters again.
    async def order_events_route(request: Request, order_id: str) -> HTTPResponse | None:
        return await order_events(request, order_id)

    documented = openapi.definition(
        operation="orderEvents",
        summary="Follow an order (Server-Sent Events)",
        description=(
            "A text/event-stream: a `snapshot` event first (as the tracking WebSocket's), then "
            "`order.status`, `delivery.created` and `delivery.status` events as they happen, "
            "never older than what the stream already sent. Every event has an `id:` (the "
            "position `<order rank>.<delivery rank + 1>`); reconnect with `Last-Event-ID` to get "
            "exactly the events after it instead of a snapshot. A `: heartbeat` comment every "
            "`ORDERFLOW_SSE_HEARTBEAT_SECONDS` of silence. See docs/realtime.md."
        ),
        tag="orders",
        parameter=[
            order_id_parameter(),
            {
                "name": "Last-Event-ID",
                "location": "header",
                "schema": String(pattern=_POSITION.pattern),
                "required": False,
                "description": "The id of the last event received: resume after it.",
            },
        ],
    )(order_events_route)
    documented = openapi.response(
        200, {"text/event-stream": String()}, "The event stream (until the client leaves)"
    )(documented)
    documented = openapi.response(400, problem_content(), "Malformed order id")(documented)
    documented = openapi.response(404, problem_content(), "No such order")(documented)
    documented = openapi.response(
        503, problem_content(), "Tracking or store not available, or too many open streams"
    )(documented)
    app.add_route(documented, ROUTE, methods=["GET"], name="order_events")
