"""A tracing span per HTTP request (only with ``ORDERFLOW_TRACING=true``).

The span (kind SERVER, ``<METHOD> <route template>``) continues an incoming W3C
``traceparent`` header and is the current span while the route runs, so the events an
order's placement writes to the outbox carry it as their ``traceparent``
(:meth:`orderflow.runtime.envelope.Envelope.new`): the POST is the root of the order's
trace through every service. WebSocket upgrades get no span (their handler never
returns a response, so none would end). With tracing off the middleware is not
registered at all.
"""

from __future__ import annotations

from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from orderflow.runtime import tracing
from orderflow.web.access import method_label, route_label


async def _begin(request: Request) -> None:
    implementation = tracing.active
    if implementation is None or hasattr(request.ctx, "span"):
        return  # off, or the error path running request middleware a second time
    if request.headers.get("upgrade", "").lower() == "websocket":
        return
    route = route_label(request)
    attributes: dict[str, Any] = {
        "http.request.method": method_label(request.method),
        "http.route": route,
        "url.path": request.path,
        "orderflow.correlation_id": getattr(request.ctx, "correlation_id", None) or "",
    }
    request.ctx.span = implementation.start_server_span(
        f"{method_label(request.method)} {route}", request.headers, attributes
    )


async def _end(request: Request, response: BaseHTTPResponse) -> None:
    started = getattr(request.ctx, "span", None)
    implementation = tracing.active
    if started is None or implementation is None:
        return
    request.ctx.span = None  # ended once, even if this runs twice
    span, before = started
    implementation.end_server_span(span, before, response.status)


async def _flush(app: Sanic) -> None:
    """Spans still buffered leave before this worker process exits."""
    tracing.flush()


def install(app: Sanic) -> None:
    """Register after the correlation middleware (its id becomes an attribute) and end
    the span before the correlation id is cleared (response middleware run low to high)."""
    if tracing.active is None:
        return
    app.register_middleware(_begin, "request", priority=99)
    app.register_middleware(_end, "response", priority=99)
    app.register_listener(_flush, "after_server_stop")
