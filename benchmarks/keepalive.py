"""A minimal asyncio HTTP/1.1 keep-alive client, so that load.py measures the server.

Why not httpx: measured in benchmarks/load.py's ``post_vs_noop`` no-op leg, the
benchmark's httpx client used 0.81 of a core against the API's 0.12 on this 2-core
machine, so the client, not the app, set the no-op rate; in the open-loop steps
httpx plus ``websockets`` used more CPU than the whole stack. This client does the
least a keep-alive POST needs: the request bytes are encoded once
(``encode_request``) and written as they are; the answer is a status line,
headers up to the blank line and exactly ``Content-Length`` bytes of body. It
refuses a chunked answer or one without ``Content-Length`` with
``HTTPProtocolError`` instead of guessing: the API's JSON and problem+json answers
are always sent with a length (tests/bench/test_keepalive_client.py checks it).

``ConnectionPool.request`` takes an idle connection or opens a new one; it never
waits for another request to finish, so an open-loop schedule built on it stays
open-loop (``opened`` counts the connections it had to open).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import time

from benchmarks.rawhttp import HTTPProtocolError, Response, parse_head

# Sanic's keep-alive timeout in this app is 75 s (web/orderflow/web/app.py); an idle
# connection older than this is closed by the client rather than risk a request on a
# socket the server is closing (a POST on it would fail without having been received).
IDLE_LIMIT_S = 60.0


def encode_request(
    method: str,
    path: str,
    host: str,
    body: bytes = b"",
    content_type: str = "application/json",
) -> bytes:
    """One complete HTTP/1.1 keep-alive request, encoded once and reused for every send."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class KeepAliveConnection:
    """One TCP connection carrying one request after the other (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.requests = 0
        self.reusable = True
        self.idle_since = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> KeepAliveConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        """The client's port: the same across requests proves the connection was reused."""
        return int(self._writer.get_extra_info("sockname")[1])

    def usable(self) -> bool:
        """Still open on both sides and not idle past ``IDLE_LIMIT_S``."""
        return (
            self.reusable
            and not self._reader.at_eof()
            and not self._writer.is_closing()
            and time.monotonic() - self.idle_since < IDLE_LIMIT_S
        )

    async def request(self, raw: bytes) -> Response:
        """Send ``raw`` (from ``encode_request``) and read its whole answer."""
        self.reusable = False  # until the whole answer has been read
        self._writer.write(raw)
        await self._writer.drain()
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HTTPProtocolError(f"connection closed after {len(exc.partial)} bytes") from exc
        status, headers = parse_head(head[:-4])
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HTTPProtocolError("chunked answer: this client reads Content-Length only")
        if "content-length" not in headers:
            raise HTTPProtocolError("answer without Content-Length")
        try:
            body = await self._reader.readexactly(int(headers["content-length"]))
        except asyncio.IncompleteReadError as exc:
            raise HTTPProtocolError("connection closed inside the body") from exc
        self.requests += 1
        self.reusable = headers.get("connection", "").lower() != "close"
        self.idle_since = time.monotonic()
        return Response(status, headers, body)

    def abort(self) -> None:
        """Close without waiting (safe while being cancelled)."""
        self.reusable = False
        self._writer.close()

    async def close(self) -> None:
        self.reusable = False
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class ConnectionPool:
    """Idle keep-alive connections to one server; a request never waits for a free one."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.opened = 0
        self._idle: list[KeepAliveConnection] = []

    async def connect(self) -> KeepAliveConnection:
        connection = await KeepAliveConnection.open(self.host, self.port)
        self.opened += 1
        return connection

    async def fill(self, connections: int) -> None:
        """Open connections until ``connections`` are idle (done before a measurement)."""
        missing = connections - len(self._idle)
        if missing > 0:
            self._idle.extend(await asyncio.gather(*(self.connect() for _ in range(missing))))

    async def take(self) -> KeepAliveConnection:
        """An idle connection still usable, else a new one (opened now, not waited for)."""
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            await connection.close()
        return await self.connect()

    async def request(self, raw: bytes) -> Response:
        connection = await self.take()
        try:
            response = await connection.request(raw)
        except BaseException:
            connection.abort()  # half a request or answer (or cancelled): unusable
            raise
        if connection.reusable:
            self._idle.append(connection)
        else:
            await connection.close()
        return response

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class SequentialClient:
    """One request at a time on a kept-alive connection, with the two calls of httpx's
    ``AsyncClient`` that latency.py makes (``post(path, json=...)``, ``get(path)``).

    Why: latency.py times a POST from the client's side, so the client's own time is in
    the figure. Measured one at a time on an idle stack, httpx took 2.6-3.9 ms more per
    POST than this client (docs/benchmarks.md, "The measuring client"): a browser's
    ``fetch`` is native code, and the system's latency should not carry a Python HTTP
    client's overhead."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._pool = ConnectionPool(host, port)

    async def post(self, path: str, *, json: object) -> Response:
        body = json_module.dumps(json).encode()
        return await self._pool.request(encode_request("POST", path, self.host, body))

    async def get(self, path: str) -> Response:
        return await self._pool.request(encode_request("GET", path, self.host))

    async def aclose(self) -> None:
        await self._pool.close()
