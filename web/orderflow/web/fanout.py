"""Fan-out of order and delivery updates to the WebSocket clients of one process.

Why a plain ``XREAD`` and not a consumer group: with a shared group, Redis hands
each entry to ONE consumer, so a client connected to gateway replica B would
miss the updates that replica A happened to read. Here every gateway process
reads ``orders-stream`` and ``deliveries-stream`` in full with its own cursor
and forwards each update to the sockets of this process that track that order.

One reader task per process, whatever the number of sockets: a socket only owns
an in-memory queue (:class:`Subscription`), so 10,000 open sockets cost 10,000
queues and still one Redis read loop.

The cursor starts at the streams' current last entry (the concrete id behind
``$``, resolved once at start) and then follows the ids it has read, so nothing
is skipped between two ``XREAD`` calls or across a Redis reconnect (as long as
the stream was not trimmed past the cursor in the meantime).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM
from orderflow.models.events import (
    DeliveryCreated,
    DeliveryStatusUpdated,
    OrderCreated,
    OrderStatusUpdated,
)
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.records import registry
from orderflow.runtime.wire import text

log = logging.getLogger(__name__)

TRACKED_STREAMS: tuple[str, ...] = (ORDERS_STREAM, DELIVERIES_STREAM)
START_OF_STREAM = "0-0"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The order reached ``status`` at ``at``."""

    order_id: str
    status: str
    at: str


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """The delivery of an order reached ``status``; ``created`` marks its first event."""

    order_id: str
    delivery_id: str
    status: str
    at: str
    created: bool = False


Update = OrderUpdate | DeliveryUpdate


def decode_update(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> Update | None:
    """Turn one stream entry into an update, or ``None`` when it is not a tracked event.

    Entries are decoded with the runtime's envelope and record registry, so a
    malformed or unknown entry is skipped instead of reaching a browser.
    """
    envelope = Envelope.from_fields(fields)
    value = registry.decode(envelope)
    if isinstance(value, OrderCreated):
        return OrderUpdate(value.order_id, value.status, value.created_at)
    if isinstance(value, OrderStatusUpdated):
        return OrderUpdate(value.order_id, value.status, value.at)
    if isinstance(value, DeliveryCreated):
        return DeliveryUpdate(
            value.order_id, value.delivery_id, value.status, value.created_at, created=True
        )
    if isinstance(value, DeliveryStatusUpdated):
        return DeliveryUpdate(value.order_id, value.delivery_id, value.status, value.at)
    return None


class Subscription:
    """The updates of one order for one socket, buffered up to ``limit``.

    A socket that cannot keep up (its queue reaches ``limit``) is marked
    ``overflowed`` and receives ``None``: it should close, and the client
    reconnects and gets a fresh snapshot, rather than the process buffering
    without bound.
    """

    def __init__(self, order_id: str, limit: int) -> None:
        self.order_id = order_id
        self.limit = limit
        self.queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self.overflowed = False

    def offer(self, update: Update) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(update)

    async def get(self) -> Update | None:
        return await self.queue.get()

    def drain(self) -> list[Update | None]:
        """Everything already queued, without waiting."""
        items: list[Update | None] = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


class TrackingHub:
    """One reader of the tracked streams per process, dispatching to subscriptions."""

    def __init__(
        self,
        streams: Sequence[str] = TRACKED_STREAMS,
        *,
        block_ms: int = 1000,
        read_count: int = 500,
        queue_limit: int = 1000,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
    ) -> None:
        self.streams = tuple(streams)
        self.block_ms = block_ms
        self.read_count = read_count
        self.queue_limit = queue_limit
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._cursor: dict[str, str] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- subscriptions -------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, order_id: str) -> Iterator[Subscription]:
        """Receive the updates of ``order_id`` while the ``with`` block runs."""
        subscription = Subscription(order_id, self.queue_limit)
        self._subscriptions.setdefault(order_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscriptions.get(order_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[order_id]

    @property
    def subscription_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscriptions.values())

    def dispatch(self, update: Update) -> int:
        """Hand ``update`` to every subscription of its order; returns how many got it."""
        subscribers = self._subscriptions.get(update.order_id)
        if not subscribers:
            return 0
        for subscription in tuple(subscribers):
            subscription.offer(update)
        return len(subscribers)

    # -- lifecycle -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the cursor is fixed: updates from then on will be delivered."""
        return self._ready.is_set()

    async def wait_ready(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the cursor; False if Redis is still unreachable."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within)
        return self._ready.is_set()

    def start(self, redis: aioredis.Redis) -> None:
        """Run the reader on ``redis``: best a client of its own (see :func:`reader_client`)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(redis), name="orderflow-tracking-fanout")

    async def stop(self, grace: float | None = None) -> None:
        """Cancel the reader and wait up to ``grace`` seconds for it to end.

        A stop flag backs up ``Task.cancel``: a cancellation that lands inside
        the Redis client while it reconnects is not always propagated, and
        then the loop still ends after its current read (``block_ms``). A
        server shutdown never hangs on the reader: after ``grace`` it is
        abandoned with a warning.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        task.cancel()
        grace = self.block_ms / 1000 + 2.0 if grace is None else grace
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("tracking fan-out reader did not stop within %.1fs; abandoning it", grace)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("tracking fan-out reader ended with %r", task.exception())

    # -- the read loop -------------------------------------------------------

    async def _run(self, redis: aioredis.Redis) -> None:
        delay = self.backoff_base
        while not self._stopping:
            try:
                if not self._ready.is_set():
                    await self._fix_cursor(redis)
                    self._ready.set()
                cursor: dict[Any, Any] = dict(self._cursor)
                response = await redis.xread(cursor, count=self.read_count, block=self.block_ms)
                delay = self.backoff_base
                self._handle(in_time_order(_iter_entries(response)))
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("tracking fan-out lost Redis (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_cap)
            except Exception:
                log.exception("tracking fan-out read failed; retrying in %.2fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_cap)

    async def _fix_cursor(self, redis: aioredis.Redis) -> None:
        """Resolve ``$`` to a concrete id per stream, so no update falls between reads."""
        for stream in self.streams:
            last = await redis.xrevrange(stream, "+", "-", count=1)
            last_id = last[0][0] if last else None
            self._cursor[stream] = text(last_id) if last_id is not None else START_OF_STREAM

    def _handle(self, entries: Iterable[tuple[str, str, Mapping[bytes, bytes]]]) -> None:
        for stream, entry_id, fields in entries:
            self._cursor[stream] = entry_id
            try:
                update = decode_update(fields)
            except Exception as exc:  # a foreign or malformed entry must not stop the loop
                log.debug("tracking fan-out skipped %s %s: %s", stream, entry_id, exc)
                continue
            if update is not None:
                self.dispatch(update)


def reader_client(url: str, block_ms: int = 1000) -> aioredis.Redis:
    """A Redis client of the reader's own, with timeouts that bound every wait.

    Its own pool keeps the long ``XREAD BLOCK`` away from the request
    handlers' connections; the socket timeout (block time + 10 s) turns a
    silently dead connection into an error the loop recovers from.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=block_ms / 1000 + 10.0,
        socket_connect_timeout=5.0,
    )


def in_time_order(
    entries: Iterable[tuple[str, str, Mapping[bytes, bytes]]],
) -> list[tuple[str, str, Mapping[bytes, bytes]]]:
    """One XREAD batch, with the streams interleaved by entry time.

    XREAD returns a batch grouped by stream (all of orders-stream, then all of
    deliveries-stream). Entry ids start with the server's clock in
    milliseconds, so a stable sort on that part puts an order's and its
    delivery's events back in publication order across streams (within one
    millisecond the per-stream order is kept, which is all Redis can tell).
    """
    return sorted(entries, key=lambda entry: int(entry[1].split("-", 1)[0]))


def _iter_entries(response: Any) -> Iterator[tuple[str, str, Mapping[bytes, bytes]]]:
    """Flatten an XREAD reply (RESP2 list or RESP3 map) to (stream, id, fields)."""
    if not response:
        return
    # RESP2: [[stream, [(id, fields), ...]], ...]; RESP3: {stream: [[(id, fields), ...]]};
    # redis-py's unified shape: {stream: [(id, fields), ...]}.
    pairs = response.items() if isinstance(response, dict) else response
    for stream, entries in pairs:
        stream_name = text(stream)
        if entries and isinstance(entries[0], list):
            entries = entries[0]
        for entry_id, fields in entries or ():
            if entry_id is not None and fields is not None:  # None: entry deleted meanwhile
                yield stream_name, text(entry_id), fields
