"""THE consumer loop: one group consumer on one stream, feeding an agent.

The hot path is one write per batch on a connection of the consumer's own:
``SADD`` the dedupe marks of the events the agent finished, ``XACK`` them and
``XREADGROUP ... COUNT n BLOCK ms ... >`` the next batch. That write is sent
*before* the agent starts on the current batch (prefetch), so the server works
while the agent does; the dedupe check of a batch (two ``SMISMEMBER``) rides in the
same write. Nothing per event goes to Redis, and no task is created per event.

Around it (docs/runtime.md explains why):

1. At start (and after a reconnect or NOGROUP) drain our own pending entries
   (``XREADGROUP ... 0``), then read new ones (``>``) with bounded COUNT/BLOCK.
2. Every ``claim_interval`` an ``XAUTOCLAIM`` (following its cursor) takes over
   entries idle longer than ``claim_idle_ms`` (their consumer died).
3. A failed event stays pending; after its back-off this consumer ``XCLAIM``s it
   to itself (Redis counts that delivery) and hands it over again. When Redis's
   delivery count reaches ``max_deliveries`` it is written to ``dead-letters``
   and acked.
4. An entry that cannot be decoded goes to ``dead-letters`` at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow.runtime import deadletter
from orderflow.runtime.batch import Batch
from orderflow.runtime.dedupe import DedupeMarks
from orderflow.runtime.event import Event
from orderflow.runtime.metrics import AgentMetrics
from orderflow.runtime.records import Record, registry
from orderflow.runtime.retry import RetryPolicy, reconnect_delays
from orderflow.runtime.stream import StreamEnded
from orderflow.runtime.wire import PrivateConnection, bulks, field_map, pack, pack_parts

log = logging.getLogger("orderflow.consumer")

DeadItem = tuple[bytes, Any, BaseException, int]  # entry id, fields, why, delivery count

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def _stream_entries(reply: Any) -> list[Any]:
    """Entries of the single stream in an XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for entries in reply.values():
            return entries or []
        return []
    return reply[0][1] or []


def _event_id(flat: Any) -> bytes | None:
    """The event id of an entry whose fields are not in envelope order (slow path)."""
    for index in range(0, len(flat or ()) - 1, 2):
        if flat[index] == b"event_id":
            return flat[index + 1]
    return None


class Consumer:
    def __init__(
        self,
        redis: Redis,
        *,
        stream: str,
        group: str,
        name: str,
        agent: str,
        accepted: dict[str, type[Record]] | None,
        policy: RetryPolicy,
        read_count: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        claim_interval: float = 5.0,
        dedupe_ttl: int = 86_400,
        start_id: str = "0",
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.name = name
        self.agent = agent
        self.policy = policy
        self.read_count = read_count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_interval = claim_interval
        self.start_id = start_id
        self.dedupe = DedupeMarks(group, stream, dedupe_ttl)
        self.metrics = AgentMetrics(agent)
        self._conn = PrivateConnection(redis)
        # event_type bytes -> class; None = accept every registered type.
        self._typed = accepted is not None
        self._classes: dict[bytes, type[Record]] = (
            {name.encode(): cls for name, cls in accepted.items()} if accepted else {}
        )
        self._stream_b = stream.encode()
        self._group_b = group.encode()
        self._name_b = name.encode()
        self._blocking_read_head = (
            b"XREADGROUP", b"GROUP", self._group_b, self._name_b, b"COUNT", b"%d" % read_count,
        )  # fmt: skip
        # Work to flush with the next round trip.
        self._done_entry_ids: list[bytes] = []  # finished: mark + ack
        self._done_event_ids: list[bytes] = []
        self._ack_only: list[bytes] = []  # skipped / duplicate entries: ack only
        self._latencies: list[float] = []  # streams append (bound method): clear in place
        # Batches handed to the agent and not fully moved to the ack buffer yet.
        self._handed: list[Batch] = []
        # A read already written (prefetch): (done, ack-only, flush commands, block ms).
        self._outstanding: tuple[int, int, int, int] | None = None
        self._handed_at = 0.0
        # Entries read whose dedupe check is written but not read yet: (entries, ids).
        self._pending: tuple[list[Any], list[bytes]] | None = None
        # Event ids flushed lately: the look-ahead check of a batch can run before the
        # marks of the previous batch reach Redis, so duplicates across them are caught here.
        self._recent: set[bytes] = set()
        self._recent_old: set[bytes] = set()
        # Failed entries waiting for their back-off: heap of (due monotonic, entry id).
        self._retry_heap: list[tuple[float, bytes]] = []
        self._retrying: set[bytes] = set()
        self._draining = True
        self._drain_cursor = b"0-0"
        self._claim_cursor = b"0-0"
        self._next_claim = time.monotonic() + claim_interval
        self._stopping = False
        self._reconnect = reconnect_delays()
        self._failures = 0
        self.group_ready = False

    # ------------------------------------------------------------------ setup
    async def ensure_group(self) -> None:
        """XGROUP CREATE ... MKSTREAM, tolerating BUSYGROUP (idempotent)."""
        try:
            await self.redis.execute_command(
                b"XGROUP", b"CREATE", self.stream, self.group, self.start_id, b"MKSTREAM"
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.group_ready = True

    def stop(self) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self._conn.close()

    # ------------------------------------------------------- agent callbacks
    @property
    def latencies(self) -> list[float]:
        return self._latencies

    async def failed(self, event: Event, exc: BaseException) -> None:
        """The handler raised: retry later, or dead-letter after max_deliveries."""
        entry_id = event.entry_id
        self.metrics.failed.inc()
        count = event.delivery_count
        if self.policy.exhausted(count):
            await self._dead_letter([(entry_id, event.fields, exc, count)], reason="max_deliveries")
            return
        delay = self.policy.delay(count)
        log.warning(
            "agent %s: %s on %s (delivery %d/%d), retrying in %.2fs",
            self.agent, type(exc).__name__, event.message_id, count,
            self.policy.max_deliveries, delay,
        )  # fmt: skip
        self.metrics.retried.inc()
        heapq.heappush(self._retry_heap, (time.monotonic() + delay, entry_id))
        self._retrying.add(entry_id)

    @property
    def inflight(self) -> int:
        """Entries handed to the agent and not finished yet."""
        return sum(len(batch) - batch.done_upto for batch in self._handed)

    def _collect_done(self) -> None:
        """Move what the agent finished (``done_upto``, minus failures) to the ack buffer."""
        if not self._handed:
            return
        keep: list[Batch] = []
        for batch in self._handed:
            start, upto = batch.acked_upto, batch.done_upto
            if upto > start:
                if batch.failed:
                    for index in range(start, upto):
                        if index not in batch.failed:
                            self._done_entry_ids.append(batch.entry_ids[index])
                            self._done_event_ids.append(batch.event_ids[index])
                else:
                    self._done_entry_ids.extend(batch.entry_ids[start:upto])
                    self._done_event_ids.extend(batch.event_ids[start:upto])
                batch.acked_upto = upto
            if upto < len(batch):
                keep.append(batch)
        self._handed = keep

    def replace_handed(self, batch: Batch, parts: list[Batch]) -> None:
        """The dispatcher split ``batch`` for N workers: track the parts instead."""
        self._handed = [b for b in self._handed if b is not batch]
        self._handed.extend(part for part in parts if len(part))

    def _busy_entry_ids(self) -> set[bytes]:
        """Entries we must not take again: in the agent's hands or waiting to be retried."""
        busy: set[bytes] = set(self._retrying)
        for batch in self._handed:
            busy.update(batch.pending_entry_ids())
        return busy

    # -------------------------------------------------------------- the loop
    async def next_batch(self, max_wait: float | None = None) -> Batch | None:
        """Flush finished work and return the next events to handle.

        Blocks at most ``block_ms`` per read (or ``max_wait`` seconds, then
        returns ``None``). Raises :class:`StreamEnded` once stopping (after flushing)."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            if self._stopping and self._outstanding is None and self._pending is None:
                await self.flush()
                raise StreamEnded
            try:
                if not self.group_ready:
                    await self.ensure_group()
                now = time.monotonic()
                self._collect_done()
                if (
                    self._outstanding is None
                    and self._pending is None
                    and self._maintenance_due(now)
                ):
                    events = await self._maintenance_round_trip(now)
                else:
                    events = await self._fast_round_trip(now, deadline)
                self._failures = 0
            except CONNECTION_ERRORS as exc:
                self._outstanding = None
                self._pending = None
                await self._conn.reset()
                await self._connection_lost(exc)
                continue
            except ResponseError as exc:
                self._outstanding = None
                self._pending = None
                await self._conn.reset()
                if "NOGROUP" in str(exc):
                    log.warning("agent %s: group %s on %s is gone; re-creating", self.agent,
                                self.group, self.stream)  # fmt: skip
                    await self._recreate_group()
                else:  # e.g. WRONGTYPE: say so loudly, keep trying, never spin
                    log.error("agent %s: redis refused a command: %s", self.agent, exc)
                    await self._connection_lost(exc)
                continue
            except asyncio.CancelledError:
                self._outstanding = None
                self._pending = None
                await self._conn.reset()  # a read may be half done
                raise
            if events is not None and len(events):
                self._handed.append(events)
                self._handed_at = time.monotonic()
                return events
            if deadline is not None and time.monotonic() >= deadline:
                return None

    async def flush(self) -> None:
        """Ack + mark everything finished so far (used at shutdown)."""
        self._collect_done()
        if not (self._done_entry_ids or self._ack_only):
            return
        for attempt in range(3):
            try:
                pipe = self.redis.pipeline(transaction=False)
                n_done, n_only = len(self._done_entry_ids), len(self._ack_only)
                self._queue_flush(pipe)
                await pipe.execute()
                self._after_flush(n_done, n_only)
                return
            except CONNECTION_ERRORS as exc:
                log.warning("agent %s: final ack failed (%s)", self.agent, exc)
                await asyncio.sleep(0.2 * (attempt + 1))

    def _queue_flush(self, pipe: Any) -> None:
        if self._done_event_ids:
            self.dedupe.add_marks(pipe, self._done_event_ids)
        ids = self._done_entry_ids + self._ack_only
        if ids:
            pipe.execute_command(b"XACK", self.stream, self.group, *ids)

    def _after_flush(self, done: int, ack_only: int) -> None:
        """Forget what was flushed (more may have been added meanwhile)."""
        if done:
            recent = self._recent
            recent.update(self._done_event_ids[:done])
            if len(recent) > 4 * self.read_count:
                self._recent_old = recent
                self._recent = set()
            del self._done_entry_ids[:done]
            del self._done_event_ids[:done]
            self.metrics.processed.inc(done)
        if self._latencies:
            self.metrics.observe_latencies(self._latencies)
            self._latencies.clear()
        if ack_only:
            del self._ack_only[:ack_only]

    def _maintenance_due(self, now: float) -> bool:
        heap = self._retry_heap
        return self._draining or bool(heap and heap[0][0] <= now) or now >= self._next_claim

    def _block_ms(self, now: float, deadline: float | None) -> int:
        """BLOCK for the read: bounded by block_ms, the next retry, the next claim, max_wait."""
        block = self.block_ms
        heap = self._retry_heap
        if heap:
            block = min(block, int((heap[0][0] - now) * 1000) + 1)
        if deadline is not None:
            block = min(block, int((deadline - now) * 1000))
        block = min(block, int((self._next_claim - now) * 1000) + 1)
        return max(1, block)

    def _build_read(self, now: float, deadline: float | None, *, block: bool = True) -> bytes:
        """SADD marks + EXPIREAT + XACK (what is finished) + XREADGROUP, as one write."""
        entry_ids = self._done_entry_ids
        event_ids = self._done_event_ids
        only = self._ack_only
        n_done = len(entry_ids)
        n_only = len(only)
        out: list[bytes] = []
        flush_cmds = 0
        if n_done:
            bucket, current, _ = self.dedupe.current()
            key = current.encode()
            out.append(pack_parts(2 + n_done, [bulks([b"SADD", key]), bulks(event_ids)]))
            out.append(pack([b"EXPIREAT", key, b"%d" % self.dedupe.expire_at(bucket)]))
            flush_cmds += 2
        if n_done or n_only:
            out.append(
                pack_parts(
                    3 + n_done + n_only,
                    [
                        bulks([b"XACK", self._stream_b, self._group_b]),
                        bulks(entry_ids),
                        bulks(only),
                    ],
                )
            )
            flush_cmds += 1
        if block:
            block_ms = self._block_ms(now, deadline)
            out.append(
                pack(
                    [
                        *self._blocking_read_head,
                        b"BLOCK",
                        block_ms,
                        b"STREAMS",
                        self._stream_b,
                        b">",
                    ]
                )
            )
        else:  # look-ahead read: answers at once, empty or not
            block_ms = 0
            out.append(pack([*self._blocking_read_head, b"STREAMS", self._stream_b, b">"]))
        self._outstanding = (n_done, n_only, flush_cmds, block_ms)
        return b"".join(out)

    async def _read_outstanding(self) -> Any:
        """Replies of the last :meth:`_build_read` write; returns the XREADGROUP reply."""
        outstanding = self._outstanding
        assert outstanding is not None
        n_done, n_only, flush_cmds, block = outstanding
        conn = self._conn
        error: ResponseError | None = None
        for _ in range(flush_cmds):
            try:
                await conn.read()
            except ResponseError as exc:
                error = error or exc
        try:
            reply = await conn.read(block / 1000 + 10.0)
        except ResponseError as exc:
            error = error or exc
        self._outstanding = None
        if error is not None:
            raise error
        self._after_flush(n_done, n_only)
        return reply

    def _may_prefetch(self, now: float, busy_seconds: float) -> bool:
        """Write the next read before handing this batch over, unless the agent is
        slow (prefetched entries would idle in our PEL) or other work is due."""
        if self._stopping or busy_seconds > 1.0:
            return False
        heap = self._retry_heap
        if heap and heap[0][0] <= now + 0.05:
            return False
        return now + 0.05 < self._next_claim

    async def _fast_round_trip(self, now: float, deadline: float | None) -> Batch | None:
        """The steady state is a two-stage pipeline on the private connection:

        call k:  read the dedupe check of batch k (sent during call k-1)
                 read the look-ahead read of batch k+1 (sent with it)
                 send the check of batch k+1 + a look-ahead read of batch k+2
                   (carrying the marks + acks of what the agent finished)
                 decode batch k, drop duplicates, hand it over
        so the server works while we decode and the agent handles batch k, and
        no reply is waited for. When the stream runs dry the look-ahead comes back
        empty and the next call falls back to a blocking read."""
        conn = self._conn
        busy_seconds = now - self._handed_at  # how long the agent took for the last batch
        if self._pending is None:
            if self._outstanding is None:
                await conn.send(self._build_read(now, deadline))
            entries = _stream_entries(await self._read_outstanding())
            if not entries:
                return None
            await self._send_check(entries, self._may_prefetch(now, busy_seconds), deadline)
        assert self._pending is not None
        entries, ids = self._pending
        self._pending = None
        seen: set[bytes] = set()
        if ids:
            in_current = await conn.read()
            in_previous = await conn.read()
            seen = self.dedupe.seen(ids, in_current, in_previous)
        if self._outstanding is not None:
            upcoming = _stream_entries(await self._read_outstanding())
            if upcoming:
                await self._send_check(upcoming, self._may_prefetch(now, busy_seconds), deadline)
        return await self._settle(self._decode([], {}, entries), seen)

    async def _send_check(self, entries: list[Any], prefetch: bool, deadline: float | None) -> None:
        """Write the dedupe check of ``entries`` (two SMISMEMBER), maybe a look-ahead read."""
        found: list[bytes | None] = [
            flat[1] if flat and flat[0] == b"event_id" else _event_id(flat) for _, flat in entries
        ]
        ids: list[bytes] = [eid for eid in found if eid]
        data = b""
        if ids:
            _, current, previous = self.dedupe.current()
            encoded = bulks(ids)
            count = b"*%d\r\n" % (2 + len(ids))
            data = b"".join(
                [count, bulks([b"SMISMEMBER", current.encode()]), encoded,
                 count, bulks([b"SMISMEMBER", previous.encode()]), encoded]
            )  # fmt: skip
        if prefetch:
            data += self._build_read(time.monotonic(), deadline, block=False)
        if data:
            await self._conn.send(data)
        self._pending = (entries, ids)

    async def _maintenance_round_trip(self, now: float) -> Batch | None:
        """Drain own pending entries, retry due failures, reclaim from dead consumers."""
        pipe = self.redis.pipeline(transaction=False)
        n_done, n_only = len(self._done_entry_ids), len(self._ack_only)
        self._queue_flush(pipe)
        flushed = len(pipe.command_stack)

        due: list[bytes] = []
        heap = self._retry_heap
        while heap and heap[0][0] <= now and len(due) < self.read_count:
            due.append(heapq.heappop(heap)[1])
        if due:
            pipe.execute_command(b"XCLAIM", self.stream, self.group, self.name, 0, *due)
        claiming = False
        if now >= self._next_claim and not self._draining:
            claiming = True
            self._next_claim = now + self.claim_interval
            pipe.execute_command(
                b"XAUTOCLAIM", self.stream, self.group, self.name, self.claim_idle_ms,
                self._claim_cursor, b"COUNT", self.read_count,
            )  # fmt: skip
        if self._draining:
            pipe.execute_command(
                b"XREADGROUP", b"GROUP", self.group, self.name, b"COUNT", self.read_count,
                b"STREAMS", self.stream, self._drain_cursor,
            )  # fmt: skip
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException:
            for entry_id in due:  # not claimed after all: try again soon
                heapq.heappush(heap, (now, entry_id))
            raise
        for reply in replies:
            if isinstance(reply, ResponseError):
                for entry_id in due:
                    heapq.heappush(heap, (now, entry_id))
                raise reply
        self._after_flush(n_done, n_only)

        position = flushed
        recovered: list[Any] = []  # entries whose delivery count we must ask Redis for
        # One entry can come back through several of these replies in the same round
        # trip (a due retry is also in the drain read after a reconnect). Each entry
        # must be handed over once: a second copy would be acked as a "duplicate"
        # while the first is still being handled, and a failure of the first would
        # then lose the event.
        taken: set[bytes] = set()

        def take(entries: Iterable[Any], busy: set[bytes]) -> None:
            for entry in entries:
                if entry and entry[0] not in busy and entry[0] not in taken:
                    taken.add(entry[0])
                    recovered.append(entry)

        if due:
            for entry_id in due:
                self._retrying.discard(entry_id)
            take(replies[position] or [], set())
            position += 1
        if claiming:
            cursor, claimed = replies[position][0], replies[position][1]
            position += 1
            self._claim_cursor = cursor
            take(claimed, self._busy_entry_ids())
        if self._draining:
            entries = _stream_entries(replies[position])
            if entries:
                self._drain_cursor = entries[-1][0]
                take(entries, self._busy_entry_ids())
            else:
                self._draining = False
        if not recovered:
            return None
        counts = await self._delivery_counts([e[0] for e in recovered])
        return await self._prepare(recovered, counts, [])

    async def _delivery_counts(self, entry_ids: list[bytes]) -> dict[bytes, int]:
        """Redis's own delivery counters (XPENDING ``times_delivered``)."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.execute_command(b"XPENDING", self.stream, self.group, entry_id, entry_id, 1)
        counts: dict[bytes, int] = {}
        for reply in await pipe.execute():
            for row in reply or []:
                counts[row[0]] = int(row[3])
        return counts

    def _decode(
        self, recovered: list[Any], counts: dict[bytes, int], fresh: list[Any]
    ) -> tuple[Batch, list[bytes], list[DeadItem], list[DeadItem]]:
        """Entries -> (batch to handle, skipped ids, invalid, exhausted). CPU only, no I/O."""
        entries: list[Any] = []
        values: list[Record] = []
        entry_ids: list[bytes] = []
        event_ids: list[bytes] = []
        delivery_counts: list[int] | None = [] if recovered else None
        bad: list[DeadItem] = []
        skipped: list[bytes] = []
        exhausted: list[DeadItem] = []
        classes = self._classes
        typed = self._typed
        max_deliveries = self.policy.max_deliveries
        for source, from_pending in ((recovered, True), (fresh, False)):
            for entry in source:
                entry_id, flat = entry[0], entry[1]
                if not flat:  # deleted (trimmed) while pending: nothing left to handle
                    skipped.append(entry_id)
                    continue
                if from_pending:
                    count = counts.get(entry_id, 0)
                    if not count:
                        continue  # no longer pending (acked meanwhile by someone else)
                else:
                    count = 1
                if (
                    len(flat) == 16
                    and flat[0] == b"event_id"
                    and flat[2] == b"event_type"
                    and flat[14] == b"payload"
                ):
                    event_id, event_type, payload = flat[1], flat[3], flat[15]
                else:
                    fields = field_map(flat)
                    event_id = fields.get(b"event_id", b"")
                    event_type = fields.get(b"event_type", b"")
                    payload = fields.get(b"payload")
                    if not event_id or not event_type or payload is None:
                        bad.append((entry_id, flat, ValueError(
                            "not an orderflow envelope (needs event_id, event_type, payload)"),
                            count))  # fmt: skip
                        continue
                cls = classes.get(event_type)
                if cls is None:
                    if typed:
                        skipped.append(entry_id)
                        continue
                    found = registry.get(event_type.decode(errors="replace"))
                    if found is None:
                        bad.append((entry_id, flat, LookupError(
                            f"unknown event_type {event_type.decode(errors='replace')!r}"),
                            count))  # fmt: skip
                        continue
                    classes[event_type] = cls = found
                if count > max_deliveries:
                    exhausted.append((entry_id, flat, RuntimeError(
                        f"delivered {count} times (max_deliveries={max_deliveries});"
                        " a consumer probably died while handling it"), count))  # fmt: skip
                    continue
                try:
                    values.append(cls.__pydantic_validator__.validate_json(payload))
                except ValidationError as exc:
                    bad.append((entry_id, flat, exc, count))
                    continue
                entries.append(entry)
                entry_ids.append(entry_id)
                event_ids.append(event_id)
                if delivery_counts is not None:
                    delivery_counts.append(count)
        batch = Batch(self, entries, values, entry_ids, event_ids, delivery_counts)
        return batch, skipped, bad, exhausted

    async def _settle(
        self,
        decoded: tuple[Batch, list[bytes], list[DeadItem], list[DeadItem]],
        seen: set[bytes],
    ) -> Batch:
        """Ack skipped entries, dead-letter bad ones, drop duplicates (``seen``: ids
        marked in Redis); returns the events to hand to the agent."""
        batch, skipped, bad, exhausted = decoded
        if skipped:
            self._ack_only.extend(skipped)
            self.metrics.not_accepted.inc(len(skipped))
        if bad:
            await self._dead_letter(bad, reason="invalid")
        if exhausted:
            await self._dead_letter(exhausted, reason="max_deliveries")
        return self._drop_duplicates(batch, seen) if len(batch) else batch

    async def _prepare(
        self, recovered: list[Any], counts: dict[bytes, int], fresh: list[Any]
    ) -> Batch:
        """Decode + dedupe check with a round trip of its own (maintenance path)."""
        decoded = self._decode(recovered, counts, fresh)
        seen: set[bytes] = set()
        ids = decoded[0].event_ids
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            self.dedupe.add_check(pipe, ids)
            current, previous = await pipe.execute()
            seen = self.dedupe.seen(ids, current, previous)
        return await self._settle(decoded, seen)

    def _drop_duplicates(self, batch: Batch, seen: set[bytes]) -> Batch:
        """Skip events marked in Redis (``seen``), repeated inside the batch, still in
        the agent's hands, finished but not flushed yet, or flushed lately."""
        if self._done_event_ids:
            seen.update(self._done_event_ids)
        for handed in self._handed:
            seen.update(handed.pending_event_ids())
        recent, recent_old = self._recent, self._recent_old
        keep: list[int] = []
        for index, eid in enumerate(batch.event_ids):
            if eid in seen or eid in recent or eid in recent_old:
                self._skip_duplicate(batch.entry_ids[index], eid)
                continue
            seen.add(eid)
            keep.append(index)
        return batch if len(keep) == len(batch) else batch.subset(keep)

    def _skip_duplicate(self, entry_id: bytes, event_id: bytes) -> None:
        self._ack_only.append(entry_id)
        self.metrics.duplicate.inc()
        log.info("agent %s: skipping duplicate event %s (entry %s)", self.agent,
                 event_id.decode(), entry_id.decode())  # fmt: skip

    async def _dead_letter(self, items: Iterable[DeadItem], *, reason: str) -> None:
        """XADD each to dead-letters, then XACK them on the source (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        ids: list[bytes] = []
        for entry_id, flat, exc, count in items:
            raw = field_map(flat)
            fields = deadletter.dead_letter_fields(
                stream=self.stream,
                entry_id=entry_id.decode(),
                group=self.group,
                consumer=self.name,
                raw=raw,
                error_type=type(exc).__name__,
                error_message=str(exc),
                traceback=deadletter.short_traceback(exc) if exc.__traceback__ else "",
                delivery_count=count,
            )
            pipe.xadd(
                deadletter.DEAD_LETTERS, fields,  # type: ignore[arg-type]
                maxlen=deadletter.DEAD_LETTERS_MAXLEN, approximate=True,
            )  # fmt: skip
            ids.append(entry_id)
            self.metrics.dead_lettered(reason)
            log.error("agent %s: entry %s of %s dead-lettered (%s: %s)", self.agent,
                      entry_id.decode(), self.stream, type(exc).__name__, exc)  # fmt: skip
        pipe.execute_command(b"XACK", self.stream, self.group, *ids)
        await pipe.execute()

    # ------------------------------------------------------------- failures
    async def _connection_lost(self, exc: BaseException) -> None:
        self._failures += 1
        self.metrics.reconnects.inc()
        delay = self._reconnect.delay(self._failures)
        log.warning("agent %s: redis unreachable (%s); retrying in %.2fs", self.agent,
                    exc, delay)  # fmt: skip
        # Replies may have been lost: re-read our own pending entries once back.
        self._draining = True
        self._drain_cursor = b"0-0"
        await asyncio.sleep(delay)

    async def _recreate_group(self) -> None:
        # The server lost the group (and probably the stream): nothing of ours is pending.
        self._retry_heap.clear()
        self._retrying.clear()
        self._draining = True
        self._drain_cursor = b"0-0"
        self._claim_cursor = b"0-0"
        self.group_ready = False  # the loop re-creates it (and retries if that fails)
