"""Concurrent publishes of one process share a round trip: natural batching, no waiting.

Why: a round trip to Redis costs the publishing process more CPU than the commands
in it: publishing one order's two outbox events alone costs about 0.46 ms of CPU, and
0.24 ms per order when 8 orders share one round trip (benchmarks/publish_cost.py;
docs/benchmarks.md, "API CPU per order"). Each placed order, and
each worker's state change, publishes its outbox right after its commit, so when
several commits finish together each used to send its own pipeline on its own
connection.

:class:`PublishBatcher` sends a call at once when no pipeline of its own is in
flight (so at low load a batch is one call and nothing waits), and otherwise queues
it; when the pipeline in flight returns, everything queued goes out in ONE pipeline.
One pipeline in flight at a time: Redis runs commands one after the other anyway, so
a second connection would not make the queued calls finish sooner than the next
batch does.

Each call still gets exactly its own results, in its own order, and the errors that
concern it: a failed round trip (connection lost, timeout) fails every call of that
batch (none can know which of its commands went out -- the same answer a lone call
got; re-publishing with ``once`` is the safe reply), while an error reply to one
command (``WRONGTYPE``...) fails only the call that sent it. A call cancelled while
queued is taken out before it is sent; one cancelled while its batch is in flight
may have been published (as before, when it was cancelled during its own round trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from orderflow.runtime.pipeline import run_commands
from orderflow.runtime.publish import Publication, publication_command
from orderflow.runtime.wire import text


@dataclass(eq=False)
class _Call:
    redis: Redis
    items: Sequence[Publication]
    once_ttl: int | None
    done: asyncio.Future[list[str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PublishBatcher:
    """One process's (one ``App``'s) publishes of prebuilt envelopes; see the module."""

    def __init__(self) -> None:
        self._queued: list[_Call] = []
        self._in_flight = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0
        """Pipelines sent (for tests and benchmarks: calls answered per round trip)."""
        self.calls = 0
        """Calls answered, or failed, by those pipelines."""

    async def publish(
        self, redis: Redis, items: Sequence[Publication], *, once_ttl: int | None
    ) -> list[str | None]:
        """``publish_envelopes(redis, items, once_ttl=...)``, sharing a round trip with
        the calls that arrive while another one is in flight."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests, a restarted app): no batch of the old
            self._loop, self._queued, self._in_flight = loop, [], False
        call = _Call(redis, items, once_ttl)
        if self._in_flight:
            self._queued.append(call)
            try:
                return await call.done
            except asyncio.CancelledError:
                if call in self._queued:  # not sent yet: it never will be
                    self._queued.remove(call)
                raise
        self._in_flight = True
        try:
            await self._send([call])
        finally:
            self._hand_over()
        return call.done.result()

    def _hand_over(self) -> None:
        """The pipeline in flight is done: what queued meanwhile goes out next, together."""
        if self._queued and self._loop is not None and not self._loop.is_closed():
            self._flusher = self._loop.create_task(self._flush_queued())
        else:
            self._in_flight = False

    async def _flush_queued(self) -> None:
        try:
            while self._queued:
                redis = self._queued[0].redis  # a reconnected App has a new client
                batch = [call for call in self._queued if call.redis is redis]
                self._queued = [call for call in self._queued if call.redis is not redis]
                await self._send(batch)
        finally:
            self._in_flight = False
            for call in self._queued:  # only left if this task was cancelled
                call.done.cancel()
            self._queued = []

    async def _send(self, batch: list[_Call]) -> None:
        """One pipeline for ``batch``; each call's future gets its share of the replies."""
        self.round_trips += 1
        self.calls += len(batch)
        try:  # whatever fails, building the pipeline included, every call gets an answer
            commands = [
                publication_command(stream, envelope, maxlen, call.once_ttl)
                for call in batch
                for stream, envelope, maxlen in call.items
            ]
            replies = await run_commands(batch[0].redis, commands, raise_on_error=False)
        except Exception as exc:
            for call in batch:
                if not call.done.done():
                    call.done.set_exception(exc)
            return
        except BaseException:  # cancelled (or the process is ending): none is answered
            for call in batch:
                call.done.cancel()
            raise
        start = 0
        for call in batch:
            own = replies[start : start + len(call.items)]
            start += len(call.items)
            if call.done.done():  # cancelled while in flight
                continue
            error = next((reply for reply in own if isinstance(reply, Exception)), None)
            if error is not None:
                call.done.set_exception(error)
            else:
                call.done.set_result([text(reply) if reply else None for reply in own])
