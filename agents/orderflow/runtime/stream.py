"""What an agent iterates: ``async for value in stream`` (Faust's model).

An event counts as *done* when the agent asks for the next one (or the next
``take`` list); done events are acked with the next read. If the agent body
raises, the runtime marks the event(s) it was working on as failed and calls
the agent again with the same stream, which continues after them. A body holding a
``take_events`` list can instead fail one event of it alone (:meth:`Stream.fail`), and
handle each in a scope of its own (:meth:`Stream.handling`), e.g. concurrently.

The stream is also the correlation *scope* of its task (see
:mod:`orderflow.runtime.context`): sends made while handling an event inherit the
event's correlation id and name it as their cause. Being the scope itself (set
once per batch) rather than setting a ContextVar per event keeps the hot loop
to an index increment. A task spawned from a handler that outlives the event
should wrap itself in ``with correlation(...)``. Sends made while handling get event
ids derived from the input (:mod:`orderflow.runtime.send_ids`), so a retried handler
re-sends the same ids.

With tracing on (:mod:`orderflow.runtime.tracing`) each event handed to the body gets a
span, ended when the body asks for the next one; with tracing off ``_spans`` is
``None`` and the hot path pays one ``is not None`` per event (and one per batch).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar, cast

from orderflow.runtime import tracing
from orderflow.runtime.batch import Batch
from orderflow.runtime.context import current_scope
from orderflow.runtime.event import Event
from orderflow.runtime.event_scope import EventScope
from orderflow.runtime.records import Record
from orderflow.runtime.send_ids import derived_event_id

T = TypeVar("T", bound=Record)


class EventSource(Protocol):
    """Where a stream gets batches (the consumer, or a per-worker queue)."""

    async def next_batch(self, max_wait: float | None = None) -> Batch | None: ...

    @property
    def latencies(self) -> list[float]:
        """Handler seconds per finished event (the stream appends, the consumer drains)."""
        ...

    async def failed(self, event: Event[Any], exc: BaseException) -> None: ...


class StreamEnded(Exception):
    """The source has stopped (shutdown); iteration ends."""


_EMPTY: list[Record] = []

FailureReport = Callable[[BaseException, Event[Any]], Awaitable[None]]
"""Told about an event failed alone (:meth:`Stream.fail`): the agent reports it."""


class Stream(Generic[T]):
    """``async for value in stream`` yields ``T`` (the topic's record type).

    ``handler`` names the agent for derived send ids (``<group>/<agent>``);
    ``on_failure`` is told about each event failed alone (:meth:`fail`)."""

    def __init__(
        self, source: EventSource, *, handler: str = "", on_failure: FailureReport | None = None
    ) -> None:
        self._source = source
        self.handler = handler
        self._on_failure = on_failure
        self._send_owner: object = None  # what the send ordinal counts for
        self._send_index = -1
        self._sends = 0
        self._batch: Batch | None = None
        self._values: list[Record] = _EMPTY
        self._pos = 0  # index of the next value to hand out
        self._cur = -1  # index of the value the agent holds, -1: none
        self._started = 0.0
        self._taken: list[tuple[Batch, int]] = []
        self._latency_append = source.latencies.append
        self._spans = tracing.event_spans(handler)  # None: tracing is off

    # ------------------------------------------------------------ the scope
    @property
    def current_event(self) -> Event[T] | None:
        """The event the agent is handling (for ``take``: the last one of the list)."""
        if self._cur >= 0 and self._batch is not None:
            return self._batch.event(self._cur)
        if self._taken:
            batch, index = self._taken[-1]
            return batch.event(index)
        return None

    @property
    def correlation_id(self) -> str | None:
        event = self.current_event
        return event.correlation_id if event is not None else None

    @property
    def child_causation_id(self) -> str | None:
        return self.event_id

    @property
    def event_id(self) -> str | None:
        event = self.current_event
        return event.event_id if event is not None else None

    @property
    def event_type(self) -> str | None:
        event = self.current_event
        return event.event_type if event is not None else None

    def child_event_id(self) -> str | None:
        """The derived id of the next send of this handling (``None`` between events)."""
        batch = self._batch
        if self._cur >= 0 and batch is not None:
            owner: object = batch
            index = self._cur
            inputs = [batch.event_ids[index].decode()]
        elif self._taken:
            owner, index = self._taken, -1
            inputs = [b.event_ids[i].decode() for b, i in self._taken]
        else:
            return None
        if owner is not self._send_owner or index != self._send_index:
            self._send_owner, self._send_index, self._sends = owner, index, 0
        ordinal = self._sends
        self._sends = ordinal + 1
        return derived_event_id(self.handler, inputs, ordinal)

    # ---------------------------------------------------------------- values
    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        # The hot path of every agent: kept flat on purpose.
        now = time.perf_counter()
        if self._cur >= 0:
            self._latency_append(now - self._started)
        pos = self._pos
        values = self._values
        if pos >= len(values):
            self._cur = -1
            if self._spans is not None:  # per batch: the last span ends before the wait
                self._spans.end()
            await self._advance(mark_done=True, max_wait=None)
            values = self._values
            pos = 0
            now = time.perf_counter()
        self._cur = pos
        self._pos = pos + 1
        self._started = now
        if self._spans is not None:  # begin() ends the previous event's span
            self._spans.begin(self._batch, pos)  # type: ignore[arg-type]
        return cast(T, values[pos])

    def events(self) -> AsyncIterator[Event[T]]:
        """Iterate :class:`Event` objects (envelope, message id, delivery count)."""
        return _EventIterator(self)

    async def _advance(self, *, mark_done: bool, max_wait: float | None) -> bool:
        """Move to the next batch (False: none within ``max_wait``); ends iteration on stop."""
        batch = self._batch
        if batch is not None and mark_done:
            batch.done_upto = len(batch)
        try:
            new = await self._source.next_batch(max_wait)
        except StreamEnded:
            self._batch = None
            self._values = _EMPTY
            self._pos = 0
            raise StopAsyncIteration from None
        if new is None or not len(new):
            if max_wait is None:  # a source returns None only when max_wait is given
                raise StopAsyncIteration
            return False
        self._batch = new
        self._values = new.values
        self._pos = 0
        current_scope.set(self)
        return True

    # -------------------------------------------------------------- batching
    async def take(self, max_: int, within: float) -> AsyncIterator[list[T]]:
        """Lists of up to ``max_`` values, waiting at most ``within`` seconds to fill one.

        All events of a list are done when the next list is requested."""
        async for items in self._take(max_, within):
            yield [cast(T, batch.values[index]) for batch, index in items]

    async def take_events(self, max_: int, within: float = 0.0) -> AsyncIterator[list[Event[T]]]:
        """Lists of up to ``max_`` :class:`Event` objects; with ``within=0`` (the default)
        the events that have **already arrived**: what is left of the batch the consumer
        read, never waiting for more once the list holds one (at low load a list is one
        event, so handling it costs no latency). It waits only when nothing is there, as
        ``async for`` does. ``within=s`` waits up to ``s`` seconds to fill a list (``take``).

        The events of a list are done (acked) when the next list is requested, except
        those reported with :meth:`fail`; if the body raises, every event of the list
        not failed yet is failed. Handle an event inside ``with stream.handling(event):``
        so that its sends carry its own correlation and derived ids (concurrent handlers
        each need their own scope); sends made outside one are scoped to the list."""
        async for items in self._take(max_, within):
            yield [cast(Event[T], batch.event(index)) for batch, index in items]

    async def _take(self, max_: int, within: float) -> AsyncIterator[list[tuple[Batch, int]]]:
        if max_ < 1:
            raise ValueError("take(n) needs n >= 1")
        self.finish()
        while True:
            self._finish_taken()
            items: list[tuple[Batch, int]] = []
            deadline = time.monotonic() + within
            while len(items) < max_:
                batch = self._batch
                if batch is not None and self._pos < len(batch):
                    end = min(len(batch), self._pos + max_ - len(items))
                    items.extend((batch, index) for index in range(self._pos, end))
                    self._pos = end
                    continue
                remaining = deadline - time.monotonic()
                if items and remaining <= 0:
                    break
                try:
                    # Items of the old batch are still held: do not mark it done.
                    await self._advance(
                        mark_done=not items, max_wait=max(0.001, remaining) if items else None
                    )
                except StopAsyncIteration:
                    if items:
                        break
                    return
            self._taken = items
            self._started = time.perf_counter()
            if self._spans is not None:
                self._spans.begin_many(items)
            yield items

    def _finish_taken(self) -> None:
        taken = self._taken
        if taken:
            if self._spans is not None:
                self._spans.end()
            self._taken = []
            seconds = (time.perf_counter() - self._started) / len(taken)
            for batch, index in taken:
                if index + 1 > batch.done_upto:
                    batch.done_upto = index + 1
                self._latency_append(seconds)

    # ------------------------------------------------------------- one event
    def _position(self, event: Event[Any]) -> int:
        """Where ``event`` is in the list the body holds (events are cached per batch,
        so identity finds it); raises ``ValueError`` for any other event."""
        for position, (batch, index) in enumerate(self._taken):
            if batch.event(index) is event:
                return position
        raise ValueError(f"{event!r} is not in the list the agent holds")

    @contextmanager
    def handling(self, event: Event[T]) -> Iterator[EventScope]:
        """Handle one event of the current ``take_events`` list in this block: sends made
        in it (in this task) get the event's correlation and derived ids, and with tracing
        on its span is the current one (see :mod:`orderflow.runtime.event_scope`)."""
        position = self._position(event)
        scope = EventScope(event, self.handler)
        token = current_scope.set(scope)
        spans = self._spans
        span_token = spans.enter(position) if spans is not None else None
        try:
            yield scope
        finally:
            if spans is not None:
                spans.leave(span_token)
            current_scope.reset(token)

    async def fail(self, event: Event[T], exc: BaseException) -> None:
        """Fail ONE event of the current ``take_events`` list: the runtime's retry and
        dead-letter policy applies to it as if it had been handled alone, and the other
        events of the list are acked when the next list is requested. Failing it again
        does nothing. The agent's ``on_error`` hooks hear of it."""
        position = self._position(event)
        batch, index = self._taken[position]
        if index in batch.failed:
            return
        batch.failed.add(index)
        if self._spans is not None:
            self._spans.fail_one(position, exc)
        await self._source.failed(event, exc)
        if self._on_failure is not None:
            await self._on_failure(exc, event)

    # ------------------------------------------------------------- failures
    async def fail_inflight(self, exc: BaseException) -> list[Event[T]]:
        """The agent body raised: the events it held are failed (retried later), but
        for those already failed alone (:meth:`fail`)."""
        held: list[tuple[Batch, int]] = [
            (batch, index) for batch, index in self._taken if index not in batch.failed
        ]
        if self._cur >= 0 and self._batch is not None:
            held.append((self._batch, self._cur))
        if self._spans is not None:
            self._spans.fail(exc)
        self._cur = -1
        self._taken = []
        events: list[Event[T]] = []
        for batch, index in held:
            batch.failed.add(index)
            event = batch.event(index)
            events.append(event)
            await self._source.failed(event, exc)
        return events

    def finish(self) -> None:
        """The body returned (or switches to ``take``): what it held is done."""
        if self._cur >= 0:
            self._latency_append(time.perf_counter() - self._started)
            self._cur = -1
            if self._spans is not None:
                self._spans.end()
        batch = self._batch
        if batch is not None and self._pos > batch.done_upto:
            batch.done_upto = self._pos
        self._finish_taken()


class _EventIterator:
    __slots__ = ("_stream",)

    def __init__(self, stream: Stream[Any]) -> None:
        self._stream = stream

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event[Any]:
        stream = self._stream
        await stream.__anext__()
        event = stream.current_event
        assert event is not None
        return event
