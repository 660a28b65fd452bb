"""Bound what Sanic reads off a WebSocket ahead of the handler, and free it at the end.

Sanic 25's ``WebsocketImplProtocol.data_received`` parses every chunk it reads
into frames at once and hands them to a new task, which then waits until the
handler has taken each message. It pauses reading only while a complete message
waits, and every message the handler takes resumes reading for another chunk
(up to 256 KiB: ~12,000 small frames). So a client that floods small messages
makes the server hold every parsed frame of the flood in tasks that wait for a
handler that will never take them: measured, a million 21-byte pings grew a
gateway worker from 65 to 235 MiB, kept after the client had left, and each of
those tasks was reported "destroyed but it is pending" at shutdown.

:class:`ReadAheadLimit` takes over ``data_received`` for one socket: while a
chunk's frames are still being handed over, reading stays paused, so at most
two chunks are parsed ahead of the handler (one being handed over, one read by
a resume of Sanic's own, which is paused again at once while a hand-over runs).
When the handler is done, :meth:`ReadAheadLimit.release` cancels and awaits the
tasks still holding frames, including any Sanic started before the limit was
installed (found among the loop's tasks by their coroutine's ``self``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sanic.server.websockets.impl import WebsocketImplProtocol


class ReadAheadLimit:
    """Installed on one socket by :meth:`install`; :meth:`release` when its handler ends."""

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        self.handing_over: set[asyncio.Task[None]] = set()

    @classmethod
    def install(cls, ws: WebsocketImplProtocol) -> ReadAheadLimit:
        """Route the socket's incoming data through a new limit (an instance attribute:
        Sanic's server protocol calls ``websocket.data_received(data)``)."""
        limit = cls(ws)
        ws.data_received = limit.data_received  # type: ignore[method-assign]
        resume_frames = ws.resume_frames

        def resume_frames_unless_handing_over() -> None:
            resume_frames()
            if limit.handing_over:
                limit.pause()

        ws.resume_frames = resume_frames_unless_handing_over  # type: ignore[method-assign]
        return limit

    def _transport(self) -> Any:
        io_proto = self.ws.io_proto
        return None if io_proto is None else io_proto.transport

    def data_received(self, data: bytes) -> None:
        """What Sanic does, plus: no further read while these frames are handed over."""
        ws = self.ws
        ws.ws_proto.receive_data(data)
        data_to_send = ws.ws_proto.data_to_send()
        events = ws.ws_proto.events_received()
        if not data_to_send and not events:
            return
        task = asyncio.create_task(ws.async_data_received(data_to_send, events))
        self.handing_over.add(task)
        task.add_done_callback(self._handed_over)
        self.pause()

    def pause(self) -> None:
        transport = self._transport()
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def _handed_over(self, task: asyncio.Task[None]) -> None:
        self.handing_over.discard(task)
        if self.handing_over or self.ws.pause_frame_fut is not None:
            return  # still busy, or Sanic holds a message for the handler: it resumes
        transport = self._transport()
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    async def release(self) -> None:
        """Cancel and await the hand-over tasks left when the handler stops reading."""
        tasks = self.handing_over | {
            task for task in asyncio.all_tasks() if self._hands_over_for_this_socket(task)
        }
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.handing_over.clear()

    def _hands_over_for_this_socket(self, task: asyncio.Task[Any]) -> bool:
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        return (
            getattr(coro, "__qualname__", "") == "WebsocketImplProtocol.async_data_received"
            and frame is not None
            and frame.f_locals.get("self") is self.ws
        )
