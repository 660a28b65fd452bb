"""Correlation ids for HTTP requests: ``X-Correlation-ID`` in, the same id out.

A client may send its own id (a well-formed one is kept; anything else is
replaced, so logs cannot be injected into); otherwise one is made. The id is
put into the runtime's correlation context for the duration of the request,
so the events an order produces (``Envelope.new`` reads that context) carry
the id of the HTTP request that caused them, and every log line shows it.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

HEADER = "X-Correlation-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _enter_runtime_context(correlation_id: str) -> contextlib.AbstractContextManager[Any] | None:
    """Enter ``agents.runtime.context.correlation`` if the runtime provides it."""
    try:
        from agents.runtime.context import correlation
    except ImportError:  # runtime not built yet in this checkout
        return None
    manager: contextlib.AbstractContextManager[Any] = correlation(correlation_id)
    manager.__enter__()
    return manager


def correlation_id_for(request: Request) -> str:
    """The request's id: the client's if well-formed, else a new one."""
    incoming = request.headers.get(HEADER, "")
    if incoming and _VALID.match(incoming):
        return incoming
    return uuid.uuid4().hex


async def _begin(request: Request) -> None:
    if getattr(request.ctx, "correlation_id", None):
        return  # middleware can run twice on an error path; keep the first id
    request.ctx.correlation_id = correlation_id_for(request)
    request.ctx.correlation_context = _enter_runtime_context(request.ctx.correlation_id)


async def _end(request: Request, response: BaseHTTPResponse) -> None:
    correlation_id = getattr(request.ctx, "correlation_id", None)
    if correlation_id:
        response.headers[HEADER] = correlation_id
    manager = getattr(request.ctx, "correlation_context", None)
    if manager is not None:
        request.ctx.correlation_context = None
        with contextlib.suppress(Exception):
            manager.__exit__(None, None, None)


def install(app: Sanic) -> None:
    """Register first among request middleware and last among response middleware.

    Sanic runs request middleware from high to low priority and response
    middleware from low to high, so priority 100 puts both ends outermost.
    """
    app.register_middleware(_begin, "request", priority=100)
    app.register_middleware(_end, "response", priority=100)
