"""Who may call ``/api/v1/ops/``: a bearer token, compared in constant time, never logged.

Why a bearer header and not a cookie: a browser attaches cookies to cross-site
requests by itself, so a cookie session needs CSRF tokens on every form; it never
attaches an ``Authorization`` header, so a page on another site cannot make an
operator's browser call this API. Every state-changing call is also a non-GET
method (POST, PUT, DELETE): nothing changes on a GET, which crawlers, prefetchers
and link previews issue freely.

The token is not written anywhere: the log and the audit lines name a
*fingerprint* (the first 12 hex digits of its SHA-256), enough to tell two tokens
apart after a rotation, useless to an attacker. A refused call is a 401
problem+json with ``WWW-Authenticate: Bearer`` (RFC 6750), and a warning with the
client's address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from sanic import HTTPResponse, Request, Sanic

from orderflow.web.problems import problem, problem_type, request_ext

OPS_API_PREFIX = "/api/v1/ops/"
REALM = "orderflow-ops"

log = logging.getLogger("orderflow.ops")
audit_log = logging.getLogger("orderflow.audit")


def fingerprint(token: str) -> str:
    """What logs say instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def presented_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def unauthorized(request: Request, *, invalid: bool) -> HTTPResponse:
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid else "")
    detail = (
        "The operator token is not valid."
        if invalid
        else "The operator API needs an 'Authorization: Bearer <token>' header."
    )
    return problem(
        401,
        "Unauthorized",
        detail,
        problem_type("unauthorized"),
        headers={"WWW-Authenticate": challenge},
        **request_ext(request),
    )


def install(app: Sanic, token: str) -> None:
    """Guard every route under :data:`OPS_API_PREFIX` with ``token``."""
    expected = token.encode()
    operator = fingerprint(token)

    async def require_token(request: Request) -> HTTPResponse | None:
        if not request.path.startswith(OPS_API_PREFIX):
            return None
        presented = presented_token(request.headers.get("authorization"))
        if presented is None or not hmac.compare_digest(presented.encode(), expected):
            log.warning(
                "ops: refused %s %s from %s (%s token)",
                request.method,
                request.path,
                request.remote_addr or request.ip,
                "no" if presented is None else "wrong",
            )
            return unauthorized(request, invalid=presented is not None)
        request.ctx.operator = operator
        return None

    app.register_middleware(require_token, "request")


def audit(request: Request, action: str, **details: Any) -> None:
    """One line per state-changing call: who (token fingerprint), what, on what; when is
    the line's own time. ``details`` become fields of the JSON line too."""
    described = " ".join(f"{key}={value}" for key, value in details.items())
    audit_log.info(
        "ops %s by operator %s%s",
        action,
        request.ctx.operator,
        f": {described}" if described else "",
        extra={"audit_action": action, "audit_operator": request.ctx.operator, **details},
    )
