"""A minimal HTTP/1.1 client on asyncio streams, for firing a thousand requests at once.

Why not httpx here: measured on this project's 2-core CI machine, an
``httpx.AsyncClient`` with a 1000-connection pool needed 28-38 s to complete
1000 concurrent POSTs that the API itself answers in under a second (its pool
bookkeeping grows with the number of connections, and its per-request CPU cost
competes with the server for the same cores). A client that slow spreads the
"simultaneous" buyers over half a minute, which weakens the race the oversell
benchmark is supposed to provoke. This client opens every TCP connection first,
then writes every request when the benchmark releases them, so all requests
really are in flight together. It speaks just enough HTTP/1.1 for that: one
request per connection, ``Connection: close``, the response read to EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def status_code(self) -> int:
        """``status`` under httpx's name, so code written for either client reads both."""
        return self.status

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class HTTPProtocolError(OSError):
    """The server's answer was not a parseable HTTP/1.1 response."""


class OneShotConnection:
    """One TCP connection that carries exactly one request."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, json_body: Any | None = None) -> Response:
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self._writer.write(head.encode("ascii") + body)
        await self._writer.drain()
        raw = await self._reader.read()  # to EOF: the server closes after the response
        return parse_response(raw)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None
            self._reader = None


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names lower-cased) of a response head without its
    blank line; shared with benchmarks/keepalive.py."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPProtocolError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def parse_response(raw: bytes) -> Response:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise HTTPProtocolError(f"incomplete HTTP response ({len(raw)} bytes)")
    status, headers = parse_head(head)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Response(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
