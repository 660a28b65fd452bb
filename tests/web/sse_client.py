"""A small Server-Sent Events reader for the web tests (httpx streaming, no extra dep)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

RECEIVE_GUARD = 15.0  # seconds; a guard against hanging, not a latency assertion


@dataclass
class ServerEvent:
    """One event as the browser's EventSource sees it (or a comment line)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict)
        return value


@dataclass
class EventReader:
    response: httpx.Response
    _lines: AsyncIterator[str] = field(init=False)

    def __post_init__(self) -> None:
        self._lines = self.response.aiter_lines()

    async def next(self, *, comments: bool = False) -> ServerEvent:
        """The next event (a comment only with ``comments``; a bare retry: is skipped)."""
        return await asyncio.wait_for(self._next(comments), RECEIVE_GUARD)

    async def _next(self, comments: bool) -> ServerEvent:
        current = ServerEvent()
        seen = False
        async for line in self._lines:
            if line == "":
                if current.comment is not None and comments:
                    return current
                if seen and current.data:
                    return current
                current, seen = ServerEvent(), False
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                current.comment = value
            elif name == "event":
                current.event, seen = value, True
            elif name == "data":
                current.data, seen = (current.data + "\n" if current.data else "") + value, True
            elif name == "id":
                current.id, seen = value, True
            elif name == "retry":
                current.retry = int(value)
        raise EOFError("the stream ended")


@asynccontextmanager
async def open_events(
    url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventReader]:
    """GET ``url`` as an event stream; asserts the stream's headers."""
    timeout = httpx.Timeout(RECEIVE_GUARD, read=RECEIVE_GUARD * 2)
    async with (
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream("GET", url, headers=headers or {}) as response,
    ):
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        yield EventReader(response)
