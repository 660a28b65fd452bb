"""Correlation ids for HTTP requests: ``X-Correlation-ID`` in, the same id out.

A client may send its own id (a well-formed one is kept; anything else is
replaced, so logs cannot be injected into); otherwise one is made. The id is
put into the runtime's correlation context for the duration of the request,
so the events an order produces (``Envelope.new`` reads that context) carry
the id of the HTTP request that caused them, and every log line shows it.
"""

from __future__ import annotations

import re
import uuid

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from orderflow.runtime.context import CorrelationScope, enter_scope

HEADER = "X-Correlation-ID"
# Matched with fullmatch: ``$`` alone also matches before a trailing line feed, which
# let "abc\n" through into every envelope and log line.
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _set_scope(correlation_id: str | None) -> None:
    """Set (or clear) the runtime's correlation scope for the rest of this task.

    Sanic runs a request's middleware and handler in one task, but a response
    middleware is not guaranteed to run (a WebSocket handler never returns a
    response), so a ``with correlation(...)`` block cannot be split across the
    two; setting the scope, and clearing it when a response goes out, can.
    """
    enter_scope(CorrelationScope(correlation_id) if correlation_id else None)


def correlation_id_for(request: Request) -> str:
    """The request's id: the client's if well-formed, else a new one."""
    incoming = request.headers.get(HEADER, "")
    if incoming and _VALID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


async def _begin(request: Request) -> None:
    if getattr(request.ctx, "correlation_id", None):
        return  # middleware can run twice on an error path; keep the first id
    request.ctx.correlation_id = correlation_id_for(request)
    _set_scope(request.ctx.correlation_id)


async def _end(request: Request, response: BaseHTTPResponse) -> None:
    correlation_id = getattr(request.ctx, "correlation_id", None)
    if correlation_id:
        response.headers[HEADER] = correlation_id
    _set_scope(None)


def install(app: Sanic) -> None:
    """Register first among request middleware and last among response middleware.

    Sanic runs request middleware from high to low priority and response
    middleware from low to high, so priority 100 puts both ends outermost.
    """
    app.register_middleware(_begin, "request", priority=100)
    app.register_middleware(_end, "response", priority=100)
