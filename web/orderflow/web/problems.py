"""RFC 9457 problem details: the one shape of every error the API returns.

Every non-2xx answer — our own refusals (out of stock, invalid body), Sanic's
(404 no such route, 405, 413, 400 on a broken request) and anything unexpected
(500) — is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and ``instance``, plus the request's ``correlation_id`` so a user can
quote one string and an operator finds every log line of that request.

Sanic's own failures reach the same handler, some before any middleware ran
(a broken request line, a head that never ends, the response timeout): the
correlation id is then made here, so those answers carry one too. Timeouts are
logged without a traceback: a client that stops sending (408) is a WARNING, a
handler that overran ``RESPONSE_TIMEOUT`` (503) an ERROR.

``install(app)`` registers a catch-all exception handler; routes call
``problem(...)`` directly for refusals they decide themselves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import ujson
from sanic import HTTPResponse, Request, Sanic
from sanic.exceptions import MethodNotAllowed, RequestTimeout, SanicException, ServiceUnavailable

from orderflow.web.access import KNOWN_METHODS
from orderflow.web.correlation import correlation_id_for

PROBLEM_CONTENT_TYPE = "application/problem+json"
BLANK = "about:blank"

log = logging.getLogger("orderflow.http.errors")


def problem_type(slug: str) -> str:
    """A stable, non-dereferenceable type URI (RFC 9457 section 3.1.1) for our own problems."""
    return f"urn:orderflow:problem:{slug}"


def problem(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    type_: str = BLANK,
    *,
    headers: dict[str, str] | None = None,
    **ext: Any,
) -> HTTPResponse:
    """Build a problem+json response; ``ext`` members are added as extension fields."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or _phrase(status),
        "status": status,
        "detail": detail or _phrase(status),
    }
    body.update({key: value for key, value in ext.items() if value is not None})
    return HTTPResponse(
        ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False),
        status=status,
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# What Sanic's own exceptions mean to a client, in words that say what to change.
_SANIC_DETAILS: dict[int, str] = {
    400: "The request could not be read.",
    404: "No resource exists at this path.",
    408: "The request took too long to arrive; the connection is closed.",
    413: "The request body is larger than this server accepts.",
    416: "The requested range cannot be served.",
    503: "The service is not available right now.",
}


def request_ext(request: Request | None) -> dict[str, Any]:
    """The request's ``instance`` and ``correlation_id`` members for :func:`problem`.

    A request that failed before the correlation middleware ran gets its id here
    (kept on ``request.ctx``, so the response middleware sends the same one).
    """
    if request is None:
        return {}
    correlation_id = getattr(request.ctx, "correlation_id", None)
    if not correlation_id:
        correlation_id = request.ctx.correlation_id = correlation_id_for(request)
    return {"instance": request.path, "correlation_id": correlation_id}


def allowed_methods(request: Request) -> list[str]:
    """The methods the router serves at this path (for ``Allow`` on a 405).

    Asked of the router rather than read from Sanic's exception, which leaves the
    list empty for routes with parameters (``/api/v1/orders/<order_id>``).
    """
    host = request.headers.getone("host", None)
    allowed = []
    for method in sorted(KNOWN_METHODS):
        try:
            request.app.router.get(request.path, method, host)
        except SanicException:
            continue
        allowed.append(method)
    return allowed


def from_exception(request: Request | None, exception: BaseException) -> HTTPResponse:
    """Map any exception to a problem response; unknown exceptions become a logged 500."""
    if isinstance(exception, SanicException):
        status = int(getattr(exception, "status_code", 500) or 500)
        headers: dict[str, str] = {}
        extra_headers = getattr(exception, "headers", None) or {}
        headers.update({str(k): str(v) for k, v in dict(extra_headers).items()})
        ext = request_ext(request)
        if isinstance(exception, ServiceUnavailable) and str(exception) == "Response Timeout":
            limit = request.app.config.RESPONSE_TIMEOUT if request else "?"
            log.error("response timeout: no answer within %ss", limit, extra=ext)
            detail = f"The server did not finish answering within {limit} seconds."
        elif status >= 500:
            log.error("server error: %s", exception, exc_info=exception, extra=ext)
            detail = "The server failed to handle this request; it has been logged."
        elif isinstance(exception, RequestTimeout):
            log.warning("request timeout: %s", exception, extra=ext)
            detail = str(exception.message)
            if detail == "Request Timeout":  # Sanic's own, on a head that never ends
                detail = _SANIC_DETAILS[408]
        elif isinstance(exception, MethodNotAllowed):
            allowed = allowed_methods(request) if request is not None else []
            method = request.method if request else "this method"
            detail = f"{method} is not allowed on this path."
            if allowed:
                detail += f" Allowed: {', '.join(allowed)}."
                headers["Allow"] = ", ".join(allowed)
        elif status == 413 and request is not None and "header" not in str(exception):
            limit = request.app.config.REQUEST_MAX_SIZE
            detail = f"The request body is larger than the {limit} bytes this server accepts."
        else:
            message = str(exception.message if hasattr(exception, "message") else exception)
            detail = message or _SANIC_DETAILS.get(status, _phrase(status))
            if status == 404 and message.startswith("Requested URL"):
                detail = _SANIC_DETAILS[404]
        return problem(status, detail=detail, headers=headers or None, **ext)
    ext = request_ext(request)
    log.error("unhandled error: %r", exception, exc_info=exception, extra=ext)
    return problem(
        500, detail="The server failed to handle this request; it has been logged.", **ext
    )


def install(app: Sanic) -> None:
    """Make the catch-all handler answer every exception raised while serving ``app``."""

    async def handle_any(request: Request, exception: Exception) -> HTTPResponse:
        return from_exception(request, exception)

    app.error_handler.add(Exception, handle_any)
