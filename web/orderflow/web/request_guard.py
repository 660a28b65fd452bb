"""Requests broken at the HTTP level get a prompt 4xx problem, not a hang or a traceback.

Two cases Sanic leaves to its defaults, each badly for a client and for the log:

* **Control characters in the request target** (``GET /x\\nFORGED HTTP/1.1``).
  Sanic splits the head on CRLF only, so a bare LF stays in the target; its
  URL parser then refuses the target twice (once for the request, once for the
  stand-in request it builds to answer the error), the second time outside any
  handler: the client got no answer and the log an "uncaught" traceback quoting
  the attacker's text. :class:`GuardedRequest` percent-encodes such bytes so the
  request can be built, marks it, and a request middleware answers 400.

* **A body shorter than its Content-Length.** Sanic reads the body after
  routing, under ``RESPONSE_TIMEOUT`` (the handler's budget, 60 s), then
  answers 503 "Response Timeout" logged as an ERROR. :func:`install` reads the
  body itself, right after routing, within ``body_timeout`` seconds
  (``ORDERFLOW_HTTP_REQUEST_TIMEOUT_SECONDS``), and answers 408 and closes the
  connection when it does not arrive. A head that never ends is Sanic's
  ``REQUEST_TIMEOUT``, set to the same value by ``create_app``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sanic import Request, Sanic
from sanic.exceptions import BadRequest, RequestTimeout
from sanic.http import Http

# Bytes that cannot appear in a request target (RFC 9112 section 3.2): C0, space, DEL.
# Non-ASCII targets never get here: Sanic refuses them with a 400 first.
_UNSAFE_TARGET_BYTES = re.compile(rb"[\x00-\x20\x7f]")


def _percent_encode(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


class GuardedRequest(Request):
    """A Sanic request that can be built from a target with control characters.

    The bytes are percent-encoded (so the path in logs and problems shows
    ``%0A``, never a raw line feed) and ``ctx.unsafe_target`` is set; the
    middleware installed by :func:`install` refuses such a request with 400.
    """

    def __init__(self, url_bytes: bytes, *args: Any, **kwargs: Any) -> None:
        unsafe = _UNSAFE_TARGET_BYTES.search(url_bytes) is not None
        if unsafe:
            url_bytes = _UNSAFE_TARGET_BYTES.sub(_percent_encode, url_bytes)
        super().__init__(url_bytes, *args, **kwargs)
        self.ctx.unsafe_target = unsafe


async def _refuse_unsafe_target(request: Request) -> None:
    if getattr(request.ctx, "unsafe_target", False):
        raise BadRequest("The request target contains control characters or spaces.")


def install(app: Sanic, body_timeout: float) -> None:
    """Refuse unsafe targets (400) and bound the wait for a request body (408).

    The middleware runs after the correlation middleware (priority 100), so the
    400 carries the request's id; it runs even when routing failed first (Sanic
    runs request middleware on its error path).
    """
    app.register_middleware(_refuse_unsafe_target, "request", priority=95)

    async def receive_body_in_time(
        request: Request, route: Any, kwargs: dict[str, Any], handler: Any
    ) -> None:
        # The same condition under which Sanic preloads the body right after this signal.
        stream = request.stream
        if not stream or not stream.request_body or route.extra.ignore_body:
            return
        if hasattr(handler, "is_stream"):
            return
        try:
            await asyncio.wait_for(request.receive_body(), body_timeout)
        except TimeoutError:
            # The rest of the body will not be read: drop the connection after the 408
            # (keep-alive off) instead of letting Sanic wait for it again.
            if isinstance(stream, Http):
                stream.keep_alive = False
                stream.request_body = None
            raise RequestTimeout(
                f"The request body did not arrive within {body_timeout:g} seconds "
                "(fewer bytes than Content-Length announced?); nothing was done."
            ) from None

    app.signal("http.routing.after")(receive_body_in_time)
