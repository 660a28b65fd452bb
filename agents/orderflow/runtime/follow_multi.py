"""Group-less reading of several streams in entry-time order: ``app.follow_many(topics)``.

Why: a fan-out that follows two streams with two :class:`~orderflow.runtime.follow.Follower`
objects gets their entries from two separate wake-ups, so an entry of one stream can be
handed out before an older entry of the other stream that is still on its way. The
tracking gateway used to hold every update a fixed 5 ms to let the older one pass.

On ONE Redis server no wait is needed: one ``XREAD BLOCK ... STREAMS a b ...`` over all
the streams (every partition of every topic) is executed atomically, so its reply carries
everything appended to any of them up to that moment (a read that had to *block* is
answered with the first stream written to alone, so it is followed at once by the same
read without ``BLOCK``: seen on Redis 7.0), and whatever is appended later gets
a later id from the same server clock and comes in a later reply. Sorting each reply by
the time part of the entry ids therefore hands entries out in the server's append order
(within one millisecond the per-stream order is kept: ids of different streams carry no
order inside one millisecond).

``COUNT`` applies per stream: a stream that filled its ``COUNT`` may have older unread
entries than what another stream returned. So each reply is cut at the earliest last
entry time among the streams that returned ``COUNT`` entries; entries after the cut are
not handed out and their streams' cursors stay before them, so the next read returns them
again (nothing skipped, nothing twice).

Not for Redis Cluster: the streams live on different slots (an ``XREAD`` naming them
fails with ``CROSSSLOT``) and on different servers whose clocks are not comparable;
:meth:`App.follow_many <orderflow.runtime.App.follow_many>` refuses a ``redis+cluster://``
app (and a private connection to a cluster without a key fails on every read). Use one
:meth:`App.follow <orderflow.runtime.App.follow>` per topic there.

The rest is :class:`~orderflow.runtime.follow.Follower`'s: ``start="$"`` resolved once per
stream at the first read, a private connection, reconnect back-off, invalid entries
skipped and logged, never raises, ``stop()`` ends a read in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from orderflow.runtime.batch import Batch
from orderflow.runtime.decoding import EntryDecoder
from orderflow.runtime.event import Event
from orderflow.runtime.follow import LAST_ENTRY, START_OF_STREAM
from orderflow.runtime.follow_base import StreamReader
from orderflow.runtime.recovery import CONNECTION_ERRORS
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.topic import Topic
from orderflow.runtime.wire import PrivateConnection, pack, text

log = logging.getLogger("orderflow.follow")


def entry_ms(entry_id: bytes) -> int:
    """The server-clock milliseconds an entry id starts with."""
    return int(entry_id.split(b"-", 1)[0])


def streams_of(reply: Any) -> list[tuple[bytes, list[Any]]]:
    """``(stream, entries)`` pairs of a multi-stream ``XREAD`` reply (RESP2 list of
    ``[stream, entries]`` or RESP3 map); ``[]`` for a nil (timed-out) reply."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(bytes(name), entries or []) for name, entries in reply.items()]
    return [(bytes(name), entries or []) for name, entries in reply]


def in_append_order(
    replies: list[tuple[bytes, list[Any]]], count: int
) -> tuple[list[tuple[bytes, Any]], dict[bytes, bytes]]:
    """The entries of one reply that can be handed out now, in entry-time order, and the
    cursor each stream moves to (see the module docstring for the cut).

    Returns ``([(stream, entry), ...], {stream: last id handed out})``; a stream with
    nothing handed out is absent from the cursors."""
    full = [entries[-1][0] for _, entries in replies if len(entries) >= count]
    cut = min((entry_ms(last) for last in full), default=None)
    merged: list[tuple[int, int, bytes, Any]] = []
    position = 0
    for stream, entries in replies:
        for entry in entries:
            ms = entry_ms(entry[0])
            if cut is not None and ms > cut:
                break  # later ones of this stream are later still
            merged.append((ms, position, stream, entry))
            position += 1
    merged.sort(key=lambda item: (item[0], item[1]))
    cursors = {stream: entry[0] for _, _, stream, entry in merged}  # last one per stream
    return [(stream, entry) for _, _, stream, entry in merged], cursors


class MultiFollower(StreamReader[Event[Any]]):
    """``async for event in follower``: every entry of every stream of ``topics`` after
    ``start``, in the order the server appended them (see the module docstring).

    The surface of :class:`~orderflow.runtime.follow.Follower` (``ready``,
    ``wait_ready``, ``stop``, ``aclose``, ``reads``, ``reconnects``). ``event.value``
    is decoded with the types of the topic the entry's stream belongs to. Iterate it
    from one task. Build it with :meth:`App.follow_many
    <orderflow.runtime.App.follow_many>`.
    """

    def __init__(
        self,
        topics: Sequence[Topic[Any]],
        *,
        start: str = LAST_ENTRY,
        read_count: int = 100,
        block_ms: int = 1000,
        backoff: RetryPolicy | None = None,
    ) -> None:
        if not topics:
            raise ValueError("MultiFollower needs at least one topic")
        self.app = topics[0].app
        if any(topic.app is not self.app for topic in topics):
            raise ValueError("MultiFollower: every topic must belong to the same app")
        self.topics = tuple(topics)
        self.read_count = read_count
        self.block_ms = block_ms
        self._decoders: dict[bytes, EntryDecoder] = {}
        for topic in topics:
            decoder = EntryDecoder(topic.accepted_types, max_deliveries=1)
            for stream in topic.streams:
                self._decoders[stream.encode()] = decoder
        first = None if start == LAST_ENTRY else start.encode()
        self._cursors: dict[bytes, bytes | None] = dict.fromkeys(self._decoders, first)
        super().__init__(backoff=backoff, ready=first is not None)

    # --------------------------------------------------------------- state
    @property
    def stream(self) -> str:
        """The followed streams, for logs and task names."""
        return "+".join(self.streams)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(stream.decode() for stream in self._decoders)

    @property
    def cursors(self) -> dict[str, str | None]:
        """Per stream, the id read up to (``None`` until ``"$"`` is resolved)."""
        return {s.decode(): None if c is None else c.decode() for s, c in self._cursors.items()}

    async def _read(self) -> None:
        """One ``XREAD`` over every stream; on any error, wait out the back-off."""
        try:
            conn = await self._connection()
            if not self._ready.is_set():
                await self._resolve_start(conn)
            self.reads += 1
            await conn.send(self._read_command(block=True))
            replies = streams_of(await conn.read(self.block_ms / 1000 + 10.0))
            if replies and len(replies) < len(self._cursors):
                # A read that *blocked* is answered by the first stream written to, with
                # that stream alone (Redis 7), even when one transaction wrote to others
                # too: read again without blocking, from the same cursors, for what every
                # stream holds now (the first reply's entries included).
                self.reads += 1
                await conn.send(self._read_command(block=False))
                replies = streams_of(await conn.read(10.0)) or replies
            self._failures = 0
            entries, cursors = in_append_order(replies, self.read_count)
            self._cursors.update(cursors)  # first: an entry that breaks us is passed
            self._buffer(entries)
        except CONNECTION_ERRORS as exc:
            await self._lost(exc, "redis unreachable")
        except Exception as exc:  # e.g. WRONGTYPE: say so, keep following, never spin
            await self._lost(exc, "read failed")

    async def _resolve_start(self, conn: PrivateConnection) -> None:
        """Each stream's last id, all in one round trip (pipelined ``XREVRANGE``)."""
        streams = list(self._cursors)
        await conn.send(b"".join(pack([b"XREVRANGE", s, b"+", b"-", b"COUNT", 1]) for s in streams))
        for stream in streams:
            last = await conn.read(10.0)
            self._cursors[stream] = last[0][0] if last else START_OF_STREAM
        self._ready.set()

    def _read_command(self, *, block: bool) -> bytes:
        streams = list(self._cursors)
        cursors = [self._cursors[s] or START_OF_STREAM for s in streams]
        wait: list[bytes | int] = [b"BLOCK", self.block_ms] if block else []
        return pack([b"XREAD", b"COUNT", self.read_count, *wait, b"STREAMS", *streams, *cursors])

    def _buffer(self, entries: list[tuple[bytes, Any]]) -> None:
        """Decode each stream's entries with its topic (one decoder call per stream),
        then queue the events in the merged order."""
        per_stream: dict[bytes, list[Any]] = {}
        for stream, entry in entries:
            per_stream.setdefault(stream, []).append(entry)
        events: dict[bytes, Event[Any]] = {}  # entry id -> event (unique within a stream)
        for stream, own in per_stream.items():
            decoded = self._decoders[stream].decode(own)
            for entry_id, _, why, _ in decoded.invalid:
                log.warning("follower of %s: skipped invalid entry %s (%s: %s)",
                            stream.decode(), text(entry_id), type(why).__name__,
                            str(why)[:300])  # fmt: skip
            batch = Batch(None, decoded.entries, decoded.values, decoded.entry_ids,
                          decoded.event_ids)  # fmt: skip
            for i in range(len(batch)):
                events[stream + b" " + decoded.entry_ids[i]] = cast(Event[Any], batch.event(i))
        for stream, entry in entries:
            event = events.get(stream + b" " + entry[0])
            if event is not None:  # None: not accepted or invalid, skipped
                self._events.append(event)

    # ---------------------------------------------------------- connection
    async def _connection(self) -> PrivateConnection:
        if self._conn is None:
            redis = await self.app.ensure_connected()
            self._conn = PrivateConnection(redis)
        return self._conn
