"""Per-request bookkeeping: latency and count metrics, and one JSON access-log line.

Every label value comes from a fixed set, so no client can grow the number of
series (each one costs memory in every worker and in Prometheus): routes are
labelled by their template (``/api/v1/orders/<order_id:str>``), never by the
concrete path, and requests that matched no route share ``unmatched``; the
method is one of ``KNOWN_METHODS`` or ``other`` (Sanic accepts any token as a
method: 200 invented ones used to make 200 series); the status is a three-digit
code. Sanic's own access log is switched off in favour of this one, which
carries the correlation id.
"""

from __future__ import annotations

import logging
import time

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse
from sanic_routing import Route

from orderflow.web.metrics import HTTP_LATENCY, HTTP_REQUESTS

UNMATCHED = "unmatched"
OTHER_METHOD = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("orderflow.http.access")


def route_template(route: Route) -> str:
    """A route's path template as a label value (``/api/v1/orders/<order_id:str>``)."""
    return "/" + str(route.path).lstrip("/")


def route_label(request: Request) -> str:
    route = getattr(request, "route", None)
    if route is None:
        return UNMATCHED
    return route_template(route)


def method_label(method: str) -> str:
    """The method, if it is one of ``KNOWN_METHODS``; ``other`` for anything else."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    """The status code as text; Sanic only sends 200..599, anything else would be a bug."""
    return str(status) if 100 <= status <= 599 else "other"


async def _start_clock(request: Request) -> None:
    if not hasattr(request.ctx, "started"):
        request.ctx.started = time.perf_counter()


async def _record(request: Request, response: BaseHTTPResponse) -> None:
    started = getattr(request.ctx, "started", None)
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = route_label(request)
    method = method_label(request.method)
    status = response.status
    HTTP_REQUESTS.labels(route=route, method=method, status=status_label(status)).inc()
    if started is not None:
        HTTP_LATENCY.labels(route=route, method=method).observe(elapsed)
    access_log.info(
        "%s %s %s %.1fms",
        request.method,
        request.path,
        status,
        elapsed * 1000,
        extra={
            "http_method": request.method,
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
