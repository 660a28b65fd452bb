"""What every group-less reader shares: stopping, iterating, reconnecting.

:class:`~orderflow.runtime.follow.Follower` (one stream) and
:class:`~orderflow.runtime.follow_multi.MultiFollower` (many streams in one ``XREAD``)
differ in what they read and how they move their cursors; how they are stopped (at once,
also in the middle of a blocking read), how they hand out what they buffered, and how
they lose and regain their private connection (with back-off, never failing the
iteration) is the same, so it lives here once. A subclass provides ``stream`` (for logs),
``_read()`` (one read: fills ``_events``, or calls :meth:`_lost` on a connection error) and
``_connection()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Generic, Self, TypeVar

from orderflow.runtime.retry import RetryPolicy, reconnect_delays
from orderflow.runtime.wire import PrivateConnection

log = logging.getLogger("orderflow.follow")

E = TypeVar("E")


class StopSignal:
    """``stop()`` was called, and a future an iteration waits on beside its read, so that
    ``stop()`` ends it at once, also in the middle of a blocking read (both followers)."""

    def __init__(self) -> None:
        self.stopped = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.stopped = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future


class StreamReader(Generic[E]):
    """``async for item in reader``: the items ``_read()`` buffers, until :meth:`stop`.

    ``ready``: whether the start cursor is fixed (``True`` at once for an explicit start
    id; otherwise the first read resolves ``"$"`` and sets it)."""

    def __init__(self, *, backoff: RetryPolicy | None, ready: bool) -> None:
        self.reads = 0  # XREADs sent (for tests and benchmarks)
        self.reconnects = 0  # connection losses recovered from (for tests and logs)
        self._backoff = backoff or reconnect_delays()
        self._failures = 0
        self._conn: PrivateConnection | None = None
        self._events: deque[E] = deque()
        self._ready = asyncio.Event()
        if ready:
            self._ready.set()
        self._stop = StopSignal()

    @property
    def stream(self) -> str:
        """What is followed, for logs and task names."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """True once the start cursor is fixed: entries added from then on are seen."""
        return self._ready.is_set()

    async def wait_ready(self, within: float | None = None) -> bool:
        """Wait up to ``within`` seconds (``None``: no limit) for :attr:`ready`; the
        cursor is resolved by the first read, so something must be iterating."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within)
        return self._ready.is_set()

    def stop(self) -> None:
        """End the iteration: a read in progress is abandoned, buffered events dropped."""
        self._stop.set()

    async def aclose(self) -> None:
        """:meth:`stop`, and close the connection now."""
        self.stop()
        await self._close()

    # ----------------------------------------------------------- iteration
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        while not self._stop.stopped:
            if self._events:
                return self._events.popleft()
            await self._unless_stopped(self._read())
        await self._close()
        raise StopAsyncIteration

    async def _read(self) -> None:
        raise NotImplementedError

    async def _unless_stopped(self, work: Awaitable[None]) -> None:
        """Run ``work`` (a read, with its back-off after an error) unless :meth:`stop`
        comes first: then it is cancelled, and the connection dropped (a reply may be
        half read)."""
        stop_signal = self._stop.future()
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait({task, stop_signal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():  # stopped, or the iterating task was cancelled
                task.cancel()
                await asyncio.wait({task})
                await self._reset()
        if not task.cancelled():
            task.result()  # _read handles its own errors; re-raise anything else

    # ---------------------------------------------------------- connection
    async def _lost(self, exc: BaseException, what: str) -> None:
        if self._stop.stopped:  # aclose() closed the socket under the read: not a failure
            return
        self._failures += 1
        self.reconnects += 1
        delay = self._backoff.delay(self._failures)
        log.warning("follower of %s: %s (%s); retrying in %.2fs", self.stream, what, exc, delay)
        await self._reset()
        await asyncio.sleep(delay)

    async def _reset(self) -> None:
        """Drop the socket: after an error or an abandoned read its state is unknown."""
        if self._conn is not None:
            await self._conn.reset()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._events.clear()
