"""CORS for browsers on other origins, configured by ``ORDERFLOW_CORS_ORIGINS``.

Empty (the default) sends no CORS headers: the bundled UI is same-origin and
needs none. ``*`` allows any origin (without credentials); otherwise a
comma-separated list of exact origins. Preflight ``OPTIONS`` requests are
answered by sanic-ext's automatic OPTIONS routes; this middleware only adds
the headers, so the rules live in one place.
"""

from __future__ import annotations

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

ALLOW_METHODS = "GET, POST, OPTIONS"
# traceparent, tracestate: a browser client that traces its requests (W3C Trace Context).
ALLOW_HEADERS = "Content-Type, Idempotency-Key, X-Correlation-ID, traceparent, tracestate"
EXPOSE_HEADERS = "Location, X-Correlation-ID, Idempotency-Replayed, Retry-After"
MAX_AGE = "600"


def parse_origins(value: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in value.split(",") if o.strip())


def install(app: Sanic, origins_setting: str) -> None:
    """Add CORS headers to responses for allowed origins; no-op when the setting is empty."""
    origins = parse_origins(origins_setting)
    if not origins:
        return
    wildcard = "*" in origins

    async def add_cors_headers(request: Request, response: BaseHTTPResponse) -> None:
        origin = request.headers.get("origin")
        if not origin:
            return
        if not wildcard:
            response.headers["Vary"] = "Origin"
            if origin.rstrip("/") not in origins:
                return
        response.headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS" and request.headers.get("access-control-request-method"):
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE

    app.register_middleware(add_cors_headers, "response", priority=50)
