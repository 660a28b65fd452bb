"""The admin port: ``/metrics``, ``/livez`` and ``/readyz`` of one process.

What a cluster asks of a worker, on a port of its own (never the public one):

* ``GET /metrics`` — Prometheus text format from a registry (the default one).
* ``GET /livez`` — 200 whenever the event loop answers. It is served *by the event
  loop*, not a thread beside it, so a loop blocked by a synchronous call fails the
  probe and the process gets restarted; a thread would keep answering "alive".
* ``GET /readyz`` — 200 when every check of :func:`orderflow.runtime.health.app_readiness`
  (or whatever ``readiness`` callable is given) passes, else 503; the body is JSON,
  ``{"ready": bool, "checks": {name: detail}}``, so ``kubectl describe`` and a person
  with curl see *which* check failed. Without a ``readiness`` callable (a process whose
  readiness is answered elsewhere, like the HTTP API's main process) there is no
  ``/readyz``.

Why a hand-written HTTP/1.0-style server and not a framework: the runtime does not
depend on one (the application's API uses Sanic; a worker has no other HTTP), and the
surface is three GET routes answered with ``Connection: close``. Requests are bounded
(head size, read timeout) so a stray client cannot hold the loop's memory or a
connection for long. ``HEAD`` is answered like ``GET`` without a body; any other
method gets 405 with ``Allow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from orderflow.runtime.health import Check

log = logging.getLogger("orderflow.admin")

MAX_HEAD_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0
ROUTES = ("/metrics", "/livez", "/readyz")

Readiness = Callable[[], Awaitable[Sequence[Check]]]
Response = tuple[int, str, bytes, dict[str, str]]


def readiness_body(checks: Sequence[Check]) -> tuple[bool, bytes]:
    ready = all(check.ok for check in checks)
    body = {"ready": ready, "checks": {check.name: check.detail for check in checks}}
    return ready, json.dumps(body, sort_keys=False).encode() + b"\n"


class AdminServer:
    """Serve the admin routes on ``host:port`` from the running event loop.

    Args:
        host: address to bind (``0.0.0.0`` in a pod, so the kubelet and Prometheus reach it).
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        readiness: coroutine function giving the checks behind ``/readyz`` (None: no
            ``/readyz`` route).
        registry: the Prometheus registry ``/metrics`` renders.
    """

    def __init__(
        self,
        host: str,
        port: int,
        readiness: Readiness | None,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self.readiness = readiness
        self.registry = registry
        self._server: asyncio.Server | None = None
        self._was_ready: bool | None = None
        self.routes = ROUTES if readiness is not None else ("/metrics", "/livez")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and listen; raises ``OSError`` when the port is taken."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------- requests
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
            method, path = parse_request_line(head)
            status, content_type, body, headers = await self.respond(method, path)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        except (asyncio.LimitOverrunError, ValueError):
            status, content_type, body, headers = plain(HTTPStatus.BAD_REQUEST, "bad request")
            method = "GET"
        writer.write(render(status, content_type, body, headers, with_body=method != "HEAD"))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def respond(self, method: str, path: str) -> Response:
        """The answer to ``method path`` (the query string already removed)."""
        if path not in self.routes:
            return plain(HTTPStatus.NOT_FOUND, f"not found; routes: {' '.join(self.routes)}")
        if method not in ("GET", "HEAD"):
            return plain(HTTPStatus.METHOD_NOT_ALLOWED, "use GET", {"Allow": "GET, HEAD"})
        if path == "/livez":
            return plain(HTTPStatus.OK, "ok")
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry), {}
        assert self.readiness is not None  # "/readyz" is routed only with one
        try:
            checks = await self.readiness()
        except Exception as exc:  # a check that raises must not take the server down
            log.exception("readiness check failed")
            checks = [Check("readiness", False, f"check raised {type(exc).__name__}")]
        ready, body = readiness_body(checks)
        self._log_change(ready, checks)
        return (200 if ready else 503), "application/json", body, {}

    def _log_change(self, ready: bool, checks: Sequence[Check]) -> None:
        """One line when readiness flips (not one per probe): what a person reading the
        worker's log after a pod went unready needs."""
        if ready == self._was_ready:
            return
        if ready:
            log.info("ready: every check passes")
        elif self._was_ready is not None or any(c.name != "app" for c in checks):
            failing = ", ".join(f"{c.name} ({c.detail})" for c in checks if not c.ok)
            log.warning("not ready: %s", failing)
        self._was_ready = ready


def parse_request_line(head: bytes) -> tuple[str, str]:
    """``b"GET /readyz?x=1 HTTP/1.1\\r\\n..."`` -> ``("GET", "/readyz")``."""
    method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if not version.startswith("HTTP/") or not method.isalpha():
        raise ValueError("not an HTTP request line")
    return method.upper(), target.split("?", 1)[0]


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return status, "text/plain; charset=utf-8", text.encode() + b"\n", headers or {}


def render(
    status: int, content_type: str, body: bytes, headers: dict[str, str], *, with_body: bool = True
) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if with_body else b"")
