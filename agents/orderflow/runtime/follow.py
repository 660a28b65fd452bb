"""Group-less reading of one stream: ``follower = app.follow(topic)``.

Why a second way to read: a consumer group hands each entry to ONE consumer of the
group, which is right for work (an order is confirmed once) and wrong for fan-out
(a WebSocket gateway must push every update to its own clients, on every replica).
A :class:`Follower` reads with plain ``XREAD BLOCK``: no group, no acks, no pending
list, so every follower of a stream sees every entry, and nothing is left behind in
Redis when it goes away.

What it keeps from the consumer: the reply parser (:func:`stream_entries`), the
decoder (:class:`EntryDecoder`: entries of types the topic does not accept are
skipped silently; invalid ones are skipped and logged, since without a group there
is nowhere to dead-letter them), the :class:`Event` objects (built by :class:`Batch`,
with no consumer: ``event.atomic()`` raises, ``stream`` and ``group`` are ``""``),
the capped jittered reconnect back-off (:func:`reconnect_delays`) and a connection
of its own (:class:`PrivateConnection`), so a long ``XREAD BLOCK`` never holds a
connection of the app's shared pool.

The cursor: ``start="$"`` is resolved ONCE, at the first read, to the concrete id of
the stream's last entry (``XREVRANGE + - COUNT 1``; ``0-0`` for an empty stream), and
then follows the ids read. Reading ``$`` on every call would skip whatever was added
between two reads or during an outage; following the cursor skips nothing (unless the
stream is trimmed past it meanwhile). One stream per follower, deliberately: in Redis
Cluster two streams live on different slots, and one ``XREAD`` over both would fail (on
one server, :mod:`orderflow.runtime.follow_multi` reads several in one ``XREAD``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar, cast

from orderflow.runtime.batch import Batch
from orderflow.runtime.decoding import EntryDecoder, stream_entries
from orderflow.runtime.event import Event
from orderflow.runtime.follow_base import StreamReader
from orderflow.runtime.records import Record
from orderflow.runtime.recovery import CONNECTION_ERRORS
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.topic import Topic
from orderflow.runtime.wire import PrivateConnection, pack, text

log = logging.getLogger("orderflow.follow")

T = TypeVar("T", bound=Record)

LAST_ENTRY = "$"
START_OF_STREAM = b"0-0"


class Follower(StreamReader[Event[T]]):
    """``async for event in follower``: every entry of one stream after ``start``.

    Yields :class:`Event` ``[T]`` (``event.value`` is the decoded record, typed by the
    topic). Iterate it from one task. ``stop()`` (or ``await aclose()``) ends the
    iteration promptly, also in the middle of a blocking read, and closes the
    connection. Build it with :meth:`App.follow <orderflow.runtime.App.follow>`; the
    app only needs to be able to connect (``start()`` is for agents).

    Args:
        topic: the stream and the types to decode (others are skipped).
        stream: which of the topic's streams to read (default: its name); for one
            partition of a partitioned topic (``PartitionedFollower`` follows them all).
        start: ``"$"`` (the default): entries added after the first read resolved the
            stream's last id; any other value is an entry id to read after (``"0"``:
            the whole stream).
        read_count: entries per ``XREAD`` at most.
        block_ms: longest wait of one ``XREAD``, ms.
        min_read_interval: seconds from the start of one ``XREAD`` to the next (default 0:
            read again at once). For a reader that only needs to notice that something
            happened now and then (the menu hub re-reads the menu at most every 0.25 s):
            what arrives meanwhile comes in one reply instead of one round trip per
            entry, and each round trip costs the process more CPU than the entries in it.
            Nothing is skipped: the cursor still follows every entry.
        backoff: delays between reconnect attempts (default :func:`reconnect_delays`).
    """

    def __init__(
        self,
        topic: Topic[T],
        *,
        stream: str | None = None,
        start: str = LAST_ENTRY,
        read_count: int = 100,
        block_ms: int = 1000,
        backoff: RetryPolicy | None = None,
        min_read_interval: float = 0.0,
    ) -> None:
        self.topic = topic
        self.read_count = read_count
        self.block_ms = block_ms
        self.min_read_interval = min_read_interval
        self._last_read = float("-inf")
        self._stream_name = stream or topic.name
        self._stream = self._stream_name.encode()
        self._cursor: bytes | None = None if start == LAST_ENTRY else start.encode()
        # Every XREAD is a first delivery (count 1), so the delivery limit never bites.
        self._decoder = EntryDecoder(topic.accepted_types, max_deliveries=1)
        super().__init__(backoff=backoff, ready=self._cursor is not None)

    # --------------------------------------------------------------- state
    @property
    def stream(self) -> str:
        return self._stream_name

    @property
    def cursor(self) -> str | None:
        """The id read up to (``None`` until ``"$"`` is resolved)."""
        return None if self._cursor is None else self._cursor.decode()

    async def _read(self) -> None:
        """One ``XREAD`` (resolving ``$`` first if needed), its events buffered; on any
        error, wait out the back-off (the caller reads again): a follower never raises,
        so a fan-out built on it never stops for good."""
        try:
            if self.min_read_interval > 0:
                loop = asyncio.get_running_loop()
                wait = self._last_read + self.min_read_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # in the stoppable read: stop() ends it
                self._last_read = loop.time()
            conn = await self._connection()
            if self._cursor is None:
                await self._resolve_start(conn)
            self.reads += 1
            await conn.send(self._read_command(self._cursor or START_OF_STREAM))
            entries = stream_entries(await conn.read(self.block_ms / 1000 + 10.0))
            self._failures = 0
            if entries:
                self._cursor = entries[-1][0]  # first: an entry that breaks us is passed
                self._buffer(entries)
        except CONNECTION_ERRORS as exc:
            await self._lost(exc, "redis unreachable")
        except Exception as exc:  # e.g. WRONGTYPE: say so, keep following, never spin
            await self._lost(exc, "read failed")

    async def _resolve_start(self, conn: PrivateConnection) -> None:
        await conn.send(pack([b"XREVRANGE", self._stream, b"+", b"-", b"COUNT", 1]))
        last = await conn.read(10.0)
        self._cursor = last[0][0] if last else START_OF_STREAM
        self._ready.set()

    def _read_command(self, cursor: bytes) -> bytes:
        return pack(
            [b"XREAD", b"COUNT", self.read_count, b"BLOCK", self.block_ms,
             b"STREAMS", self._stream, cursor]
        )  # fmt: skip

    def _buffer(self, entries: list[Any]) -> None:
        decoded = self._decoder.decode(entries)
        for entry_id, _, why, _ in decoded.invalid:
            log.warning("follower of %s: skipped invalid entry %s (%s: %s)", self.stream,
                        text(entry_id), type(why).__name__, str(why)[:300])  # fmt: skip
        batch = Batch(None, decoded.entries, decoded.values, decoded.entry_ids, decoded.event_ids)
        self._events.extend(cast(Event[T], batch.event(i)) for i in range(len(batch)))

    # ---------------------------------------------------------- connection
    async def _connection(self) -> PrivateConnection:
        """Ours, made from the app's pool settings but never taken from or returned to
        the pool (that is :class:`PrivateConnection`); (re)connects lazily."""
        if self._conn is None:
            redis = await self.topic.app.ensure_connected()
            self._conn = PrivateConnection(redis, self._stream_name)
        return self._conn
