"""RFC 9457 problem details: the one shape of every error the API returns.

Every non-2xx answer — our own refusals (out of stock, invalid body), Sanic's
(404 no such route, 405, 413, 400 on a broken request) and anything unexpected
(500) — is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and ``instance``, plus the request's ``correlation_id`` so a user can
quote one string and an operator finds every log line of that request.

``install(app)`` registers a catch-all exception handler; routes call
``problem(...)`` directly for refusals they decide themselves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import ujson
from sanic import HTTPResponse, Request, Sanic
from sanic.exceptions import MethodNotAllowed, SanicException

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
    408: "The request took too long to arrive.",
    413: "The request body is larger than this server accepts.",
    416: "The requested range cannot be served.",
    503: "The service is not available right now.",
}


def request_ext(request: Request | None) -> dict[str, Any]:
    """The request's ``instance`` and ``correlation_id`` members for :func:`problem`."""
    if request is None:
        return {}
    ext: dict[str, Any] = {"instance": request.path}
    correlation_id = getattr(request.ctx, "correlation_id", None)
    if correlation_id:
        ext["correlation_id"] = correlation_id
    return ext


def from_exception(request: Request | None, exception: BaseException) -> HTTPResponse:
    """Map any exception to a problem response; unknown exceptions become a logged 500."""
    if isinstance(exception, SanicException):
        status = int(getattr(exception, "status_code", 500) or 500)
        headers: dict[str, str] = {}
        extra_headers = getattr(exception, "headers", None) or {}
        headers.update({str(k): str(v) for k, v in dict(extra_headers).items()})
        if status >= 500:
            log.error("server error: %s", exception, exc_info=exception)
            detail = "The server failed to handle this request; it has been logged."
        elif isinstance(exception, MethodNotAllowed):
            allowed = sorted(getattr(exception, "allowed_methods", None) or [])
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
        return problem(status, detail=detail, headers=headers or None, **request_ext(request))
    log.error("unhandled error: %r", exception, exc_info=exception)
    return problem(
        500,
        detail="The server failed to handle this request; it has been logged.",
        **request_ext(request),
    )


def install(app: Sanic) -> None:
    """Make the catch-all handler answer every exception raised while serving ``app``."""

    async def handle_any(request: Request, exception: Exception) -> HTTPResponse:
        return from_exception(request, exception)

    app.error_handler.add(Exception, handle_any)
