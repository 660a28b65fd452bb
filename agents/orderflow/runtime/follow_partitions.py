"""Group-less reading of every partition of a topic: ``app.follow(topic)`` when the
topic has ``partitions=N`` (N > 1).

Why N readers and not one ``XREAD`` over N streams: under Redis Cluster the partitions
live on different slots (usually different masters), and one ``XREAD`` naming keys of
several slots fails with ``CROSSSLOT``. So each partition gets a
:class:`~orderflow.runtime.follow.Follower` of its own (its own connection to the node
that owns it, its own cursor, its own reconnect back-off), and one task per partition
moves what it reads into one bounded queue that this object yields from.

Order: entries of one partition come out in stream order, so events of one key (one
partition) keep their order; entries of different partitions interleave as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar

from orderflow.runtime.event import Event
from orderflow.runtime.follow import LAST_ENTRY, Follower
from orderflow.runtime.follow_base import StopSignal
from orderflow.runtime.records import Record
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.topic import Topic

T = TypeVar("T", bound=Record)


class PartitionedFollower(Generic[T]):
    """``async for event in follower``: every entry of every partition after ``start``.

    The same surface as :class:`Follower` (``ready``, ``wait_ready``, ``stop``,
    ``aclose``, ``stream``, ``reconnects``); ``start`` and ``min_read_interval`` apply
    to each partition (``"$"``: each partition's last entry when it first reads). Iterate
    it from one task.
    """

    def __init__(
        self,
        topic: Topic[T],
        *,
        start: str = LAST_ENTRY,
        read_count: int = 100,
        block_ms: int = 1000,
        backoff: RetryPolicy | None = None,
        min_read_interval: float = 0.0,
    ) -> None:
        self.topic = topic
        self.followers: tuple[Follower[T], ...] = tuple(
            Follower(
                topic,
                stream=stream,
                start=start,
                read_count=read_count,
                block_ms=block_ms,
                backoff=backoff,
                min_read_interval=min_read_interval,
            )
            for stream in topic.streams
        )
        # Bounded: a slow iterator holds the partition readers back instead of piling up.
        self._events: asyncio.Queue[Event[T]] = asyncio.Queue(read_count * len(self.followers))
        self._pumps: list[asyncio.Task[None]] = []
        self._stop = StopSignal()

    # --------------------------------------------------------------- state
    @property
    def stream(self) -> str:
        """The topic's name (its partitions are :attr:`streams`)."""
        return self.topic.name

    @property
    def streams(self) -> tuple[str, ...]:
        return self.topic.streams

    @property
    def cursors(self) -> dict[str, str | None]:
        """Per partition stream, the id read up to (``None`` until ``"$"`` is resolved)."""
        return {follower.stream: follower.cursor for follower in self.followers}

    @property
    def reconnects(self) -> int:
        return sum(follower.reconnects for follower in self.followers)

    @property
    def ready(self) -> bool:
        """True once every partition's start cursor is fixed."""
        return all(follower.ready for follower in self.followers)

    async def wait_ready(self, within: float | None = None) -> bool:
        """Wait up to ``within`` seconds (``None``: no limit) for :attr:`ready`; the
        cursors are resolved by the first reads, so something must be iterating."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        for follower in self.followers:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            if not await follower.wait_ready(left):
                return False
        return True

    def stop(self) -> None:
        """End the iteration: every partition's read is abandoned, buffered events dropped."""
        for follower in self.followers:
            follower.stop()
        self._stop.set()

    async def aclose(self) -> None:
        """:meth:`stop`, wait for the partition readers, close their connections."""
        self.stop()
        await self._close()

    # ----------------------------------------------------------- iteration
    def __aiter__(self) -> PartitionedFollower[T]:
        return self

    async def __anext__(self) -> Event[T]:
        if not self._pumps and not self._stop.stopped:
            self._pumps = [
                asyncio.create_task(self._pump(f), name=f"orderflow-follow:{f.stream}")
                for f in self.followers
            ]
        stop_signal: asyncio.Future[Any] = self._stop.future()
        while not self._stop.stopped:
            if not self._events.empty():
                return self._events.get_nowait()
            getter: asyncio.Future[Any] = asyncio.ensure_future(self._events.get())
            await asyncio.wait({getter, stop_signal}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                return getter.result()
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
        await self._close()
        raise StopAsyncIteration

    async def _pump(self, follower: Follower[T]) -> None:
        async for event in follower:  # never raises: each follower reconnects by itself
            await self._events.put(event)

    async def _close(self) -> None:
        pumps, self._pumps = self._pumps, []
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for follower in self.followers:
            await follower.aclose()
        while not self._events.empty():
            self._events.get_nowait()


# What ``app.follow(topic)`` returns: one stream's follower, or one over every partition.
TopicFollower = Follower[T] | PartitionedFollower[T]
