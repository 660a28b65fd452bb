"""What an agent iterates: ``async for value in stream`` (Faust's model).

An event counts as *done* when the agent asks for the next one (or the next
``take`` list); done events are acked with the next read. If the agent body
raises, the runtime marks the event(s) it was working on as failed and calls
the agent again with the same stream, which continues after them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from agents.runtime.context import current_scope
from agents.runtime.event import Event
from agents.runtime.records import Record


class EventSource(Protocol):
    """Where a stream gets events (the consumer, or a per-worker queue)."""

    async def next_batch(self, max_wait: float | None = None) -> list[Event]: ...

    def done(self, event: Event, seconds: float) -> None: ...

    async def failed(self, event: Event, exc: BaseException) -> None: ...


class StreamEnded(Exception):
    """The source has stopped (shutdown); iteration ends."""


class Stream:
    def __init__(self, source: EventSource) -> None:
        self._source = source
        self._buffer: list[Event] = []
        self._pos = 0
        self.current_event: Event | None = None
        self._taken: list[Event] = []
        self._started = 0.0

    # ---------------------------------------------------------------- values
    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Record:
        return (await self._next_event()).value

    def events(self) -> AsyncIterator[Event]:
        """Iterate :class:`Event` objects (envelope, message id, delivery count)."""
        return _EventIterator(self)

    async def _next_event(self) -> Event:
        current = self.current_event
        if current is not None:
            self.current_event = None
            self._source.done(current, time.perf_counter() - self._started)
        if self._pos >= len(self._buffer):
            self._buffer = await self._fetch(None)
            self._pos = 0
        event = self._buffer[self._pos]
        self._pos += 1
        self.current_event = event
        current_scope.set(event)
        self._started = time.perf_counter()
        return event

    async def _fetch(self, max_wait: float | None) -> list[Event]:
        try:
            return await self._source.next_batch(max_wait)
        except StreamEnded:
            current_scope.set(None)
            raise StopAsyncIteration from None

    # -------------------------------------------------------------- batching
    async def take(self, max_: int, within: float) -> AsyncIterator[list[Record]]:
        """Lists of up to ``max_`` values, waiting at most ``within`` seconds to fill one.

        All events of a list are done when the next list is requested."""
        async for events in self.take_events(max_, within):
            yield [event.value for event in events]

    async def take_events(self, max_: int, within: float) -> AsyncIterator[list[Event]]:
        if max_ < 1:
            raise ValueError("take(n) needs n >= 1")
        self._finish_current()
        while True:
            self._finish_taken()
            items: list[Event] = []
            deadline = time.monotonic() + within
            while len(items) < max_:
                if self._pos < len(self._buffer):
                    room = max_ - len(items)
                    items.extend(self._buffer[self._pos : self._pos + room])
                    self._pos = min(len(self._buffer), self._pos + room)
                    continue
                remaining = deadline - time.monotonic()
                if items and remaining <= 0:
                    break
                try:
                    self._buffer = await self._source.next_batch(
                        max(0.001, remaining) if items else None
                    )
                except StreamEnded:
                    if items:
                        break
                    current_scope.set(None)
                    return
                self._pos = 0
            self._taken = items
            current_scope.set(items[-1])
            self._started = time.perf_counter()
            yield items

    def _finish_current(self) -> None:
        current = self.current_event
        if current is not None:
            self.current_event = None
            self._source.done(current, time.perf_counter() - self._started)

    def _finish_taken(self) -> None:
        taken = self._taken
        if taken:
            self._taken = []
            seconds = (time.perf_counter() - self._started) / len(taken)
            for event in taken:
                self._source.done(event, seconds)

    # ------------------------------------------------------------- failures
    async def fail_inflight(self, exc: BaseException) -> int:
        """The agent body raised: the events it held are failed (retried later)."""
        failed = [self.current_event] if self.current_event is not None else []
        failed.extend(self._taken)
        self.current_event = None
        self._taken = []
        for event in failed:
            await self._source.failed(event, exc)
        current_scope.set(None)
        return len(failed)

    def finish(self) -> None:
        """The agent body returned normally: what it held is done."""
        self._finish_current()
        self._finish_taken()

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._pos


class _EventIterator:
    __slots__ = ("_stream",)

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event:
        return await self._stream._next_event()
