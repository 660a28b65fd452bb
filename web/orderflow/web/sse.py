"""Server-Sent Events on Sanic: the wire format, bounded sends, heartbeats, the open-stream cap.

Shared by the order-tracking stream (:mod:`orderflow.web.order_events`) and the menu
stream (:mod:`orderflow.web.menu_events`). What every stream gets here, so neither can
forget it:

* a ``retry:`` hint first, then events; a comment line (``: heartbeat``) whenever the
  stream has been quiet for ``sse_heartbeat_seconds``, so proxies and Sanic's own
  response timeout (measured from the last write) keep the connection;
* ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` (nginx would otherwise buffer
  the stream and the client would see nothing);
* bounded output: each write waits for the transport to drain at most
  ``sse_send_timeout_seconds``; a client that does not read for that long is
  disconnected, so a stalled client costs one transport buffer (64 KiB), not a queue;
* at most ``sse_max_streams`` open streams per process (:class:`OpenStreams`), and all of
  them end when the server stops, before Sanic waits for its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

from sanic import Request, Sanic
from sanic.response import HTTPResponse, ResponseStream

from orderflow.web.metrics import SSE_STREAMS
from orderflow.web.problems import problem, problem_type, request_ext

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = b": heartbeat\n\n"
FULL = "This server has as many event streams open as it serves; retry shortly."


def stream_unavailable(request: Request, detail: str) -> HTTPResponse:
    """The 503 of a stream that cannot start (no fan-out yet, or the cap reached)."""
    return problem(
        503,
        "Event stream unavailable",
        detail,
        problem_type("stream-unavailable"),
        headers={"Retry-After": "1"},
        **request_ext(request),
    )


def encode_event(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One event: ``id:`` (if any), ``event:``, one ``data:`` line of compact JSON.

    JSON never contains a raw newline, so one ``data:`` line always suffices.
    """
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines += [f"event: {event}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return ("\n".join(lines) + "\n\n").encode()


class OpenStreams:
    """The event streams this process has open: capped, and all ended at server stop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing = False
        self._stops: set[asyncio.Event] = set()

    @property
    def count(self) -> int:
        return len(self._stops)

    def admit(self) -> asyncio.Event | None:
        """A stop signal for one new stream, or None when full or shutting down."""
        if self.closing or len(self._stops) >= self.limit:
            return None
        stop = asyncio.Event()
        self._stops.add(stop)
        SSE_STREAMS.inc()
        return stop

    def release(self, stop: asyncio.Event) -> None:
        if stop in self._stops:
            self._stops.discard(stop)
            SSE_STREAMS.dec()

    def close_all(self) -> None:
        """Signal every open stream to end (server stop); no new ones are admitted."""
        self.closing = True
        for stop in tuple(self._stops):
            stop.set()


class EventStream:
    """One open ``text/event-stream`` response with bounded writes."""

    def __init__(self, request: Request, response: HTTPResponse | ResponseStream,
                 send_timeout: float) -> None:  # fmt: skip
        self.request = request
        self.response = response
        self.send_timeout = send_timeout

    async def send(self, chunk: bytes) -> bool:
        """True once written; False when the client is gone or did not read in time
        (then the connection is dropped at once)."""
        try:
            await asyncio.wait_for(cast(HTTPResponse, self.response).send(chunk), self.send_timeout)
        except TimeoutError:
            log.info("dropping an event stream: client did not read for %.1fs", self.send_timeout)
            self.abort()
            return False
        except Exception as exc:  # client went away (RequestCancelled, ConnectionError)
            log.debug("event stream ended by the client: %r", exc)
            return False
        return True

    def abort(self) -> None:
        transport = cast(asyncio.Transport | None, self.request.transport)
        if transport is not None and not transport.is_closing():
            transport.abort()  # close() would wait to flush what the client does not read


async def pump(
    stream: EventStream,
    next_chunk: Callable[[], Coroutine[Any, Any, bytes | None]],
    stop: asyncio.Event,
    heartbeat: float,
) -> None:
    """Write what ``next_chunk`` returns until it returns None, the client stops reading,
    or ``stop`` is set; a heartbeat comment after every ``heartbeat`` quiet seconds.

    Its tasks are cancelled and awaited before it returns: nothing of the stream
    outlives the handler (no "Task was destroyed but it is pending" at shutdown).
    """
    stopped = asyncio.create_task(stop.wait())
    waiting: asyncio.Task[bytes | None] | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.create_task(next_chunk())
            done, _ = await asyncio.wait(
                {waiting, stopped}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if stopped in done:
                return
            if waiting in done:
                chunk = waiting.result()
                waiting = None
                if chunk is None:
                    return
            else:
                chunk = HEARTBEAT
            if not await stream.send(chunk):
                return
    finally:
        for task in (waiting, stopped):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def install(app: Sanic, max_streams: int) -> None:
    """Give the app its :class:`OpenStreams` and end every stream when the server stops
    (before Sanic waits for open connections, so a stop never waits on a stream)."""
    app.ctx.open_streams = OpenStreams(max_streams)

    async def end_streams(app: Sanic) -> None:
        app.ctx.open_streams.close_all()

    app.register_listener(end_streams, "before_server_stop")
