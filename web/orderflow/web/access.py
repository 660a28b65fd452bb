"""Per-request bookkeeping: latency and count metrics, and one JSON access-log line.

Routes are labelled by their template (``/api/v1/orders/<order_id:str>``),
never by the concrete path, so a scan of random URLs cannot blow up the
number of series; requests that matched no route share the label
``unmatched``. Sanic's own access log is switched off in favour of this one,
which carries the correlation id.
"""

from __future__ import annotations

import logging
import time

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from orderflow.web.metrics import HTTP_LATENCY, HTTP_REQUESTS

UNMATCHED = "unmatched"

access_log = logging.getLogger("orderflow.http.access")


def route_label(request: Request) -> str:
    route = getattr(request, "route", None)
    if route is None:
        return UNMATCHED
    return "/" + str(route.path).lstrip("/")


async def _start_clock(request: Request) -> None:
    if not hasattr(request.ctx, "started"):
        request.ctx.started = time.perf_counter()


async def _record(request: Request, response: BaseHTTPResponse) -> None:
    started = getattr(request.ctx, "started", None)
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = route_label(request)
    method = request.method
    status = response.status
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    if started is not None:
        HTTP_LATENCY.labels(route=route, method=method).observe(elapsed)
    access_log.info(
        "%s %s %s %.1fms",
        method,
        request.path,
        status,
        elapsed * 1000,
        extra={
            "http_method": method,
            "http_path": request.path,
            "http_route": route,
            "http_status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "correlation_id": getattr(request.ctx, "correlation_id", None),
        },
    )


def install(app: Sanic) -> None:
    app.register_middleware(_start_clock, "request", priority=90)
    app.register_middleware(_record, "response", priority=90)
