"""THE consumer loop: one group consumer on one stream, feeding an agent.

The hot path is one round trip per batch, on a connection of its own, with
one Lua script (:data:`CONSUME`) that writes the dedupe marks of the events the
agent finished, XACKs them, reads the next batch (``XREADGROUP ... >``) and
drops (and acks) entries whose event id is already marked. Nothing per event
goes to Redis. Only when the stream is empty does the consumer fall back to a
blocking ``XREADGROUP ... BLOCK`` (plus a dedupe check of what it returns).

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
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.runtime import deadletter
from agents.runtime.dedupe import DedupeMarks
from agents.runtime.event import Event
from agents.runtime.metrics import AgentMetrics
from agents.runtime.records import Record, registry
from agents.runtime.retry import RetryPolicy, reconnect_delays
from agents.runtime.scripts import LuaScript
from agents.runtime.stream import StreamEnded
from agents.runtime.wire import PrivateConnection, bulks, pack, pack_parts

log = logging.getLogger("orderflow.consumer")

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# KEYS: stream, seen (current bucket), seen (previous bucket)
# ARGV: group, consumer, count, expireat, n_mark, n_only,
#       <n_mark entry ids> <n_mark event ids> <n_only entry ids>
# Marks finished events, acks them (and the ack-only ids), reads up to `count`
# new entries and returns {duplicates, entries-not-yet-processed}; duplicates
# (event id already marked) are acked right here.
CONSUME = LuaScript(
    """
local group, consumer = ARGV[1], ARGV[2]
local n_mark, n_only = tonumber(ARGV[5]), tonumber(ARGV[6])
if n_mark > 0 then
  local marks = {}
  for i = 1, n_mark do
    marks[2 * i - 1] = ARGV[6 + n_mark + i]
    marks[2 * i] = '1'
  end
  redis.call('HSET', KEYS[2], unpack(marks))
  redis.call('EXPIREAT', KEYS[2], ARGV[4])
end
if n_mark + n_only > 0 then
  local ids = {}
  for i = 1, n_mark do ids[i] = ARGV[6 + i] end
  for i = 1, n_only do ids[n_mark + i] = ARGV[6 + 2 * n_mark + i] end
  redis.call('XACK', KEYS[1], group, unpack(ids))
end
local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', ARGV[3],
                         'STREAMS', KEYS[1], '>')
if not reply then return {0, {}} end
local out, dups = {}, {}
for _, entry in ipairs(reply[1][2]) do
  local fields = entry[2]
  local eid = false
  if fields[1] == 'event_id' then
    eid = fields[2]
  else
    for i = 1, #fields, 2 do
      if fields[i] == 'event_id' then eid = fields[i + 1]; break end
    end
  end
  if eid and (redis.call('HEXISTS', KEYS[2], eid) == 1
              or redis.call('HEXISTS', KEYS[3], eid) == 1) then
    dups[#dups + 1] = entry[1]
  else
    out[#out + 1] = entry
  end
end
if #dups > 0 then redis.call('XACK', KEYS[1], group, unpack(dups)) end
return {#dups, out}
"""
)


def _stream_entries(reply: Any) -> list[Any]:
    """Entries of the single stream in an XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for entries in reply.values():
            return entries or []
        return []
    return reply[0][1] or []


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
        self._done: list[Event] = []  # finished: mark + ack
        self._ack_only: list[bytes] = []  # skipped / duplicate entries: ack only
        self._latencies: list[float] = []
        # Entries handed to the agent and not finished yet (entry id -> event id).
        self._inflight: dict[bytes, bytes] = {}
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
        await self.flush()
        await self._conn.close()

    # ------------------------------------------------------- agent callbacks
    def done(self, event: Event, seconds: float) -> None:
        """The agent finished ``event``: ack + mark it with the next round trip."""
        self._inflight.pop(event.entry_id, None)
        self._done.append(event)
        self._latencies.append(seconds)

    async def failed(self, event: Event, exc: BaseException) -> None:
        """The handler raised: retry later, or dead-letter after max_deliveries."""
        entry_id = event.entry_id
        self._inflight.pop(entry_id, None)
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
        return len(self._inflight)

    # -------------------------------------------------------------- the loop
    async def next_batch(self, max_wait: float | None = None) -> list[Event]:
        """Flush finished work and return the next events to handle.

        Blocks at most ``block_ms`` per read (or ``max_wait`` seconds, then
        returns ``[]``). Raises :class:`StreamEnded` once stopping (after flushing)."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            if self._stopping:
                await self.flush()
                raise StreamEnded
            try:
                if not self.group_ready:
                    await self.ensure_group()
                now = time.monotonic()
                heap = self._retry_heap
                if self._draining or (heap and heap[0][0] <= now) or now >= self._next_claim:
                    events = await self._maintenance_round_trip(now)
                else:
                    events = await self._fast_round_trip(now, deadline)
                self._failures = 0
            except CONNECTION_ERRORS as exc:
                await self._conn.reset()
                await self._connection_lost(exc)
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("agent %s: group %s on %s is gone; re-creating", self.agent,
                            self.group, self.stream)  # fmt: skip
                await self._recreate_group()
                continue
            except asyncio.CancelledError:
                await self._conn.reset()  # a read may be half done
                raise
            if events:
                return events
            if deadline is not None and time.monotonic() >= deadline:
                return []

    async def flush(self) -> None:
        """Ack + mark everything finished so far (used at shutdown)."""
        if not (self._done or self._ack_only):
            return
        for attempt in range(3):
            try:
                pipe = self.redis.pipeline(transaction=False)
                self._queue_flush(pipe)
                await pipe.execute()
                self._after_flush(len(self._done), len(self._ack_only))
                return
            except CONNECTION_ERRORS as exc:
                log.warning("agent %s: final ack failed (%s)", self.agent, exc)
                await asyncio.sleep(0.2 * (attempt + 1))

    def _queue_flush(self, pipe: Any) -> None:
        if self._done:
            self.dedupe.add_marks(pipe, [event._event_id for event in self._done])
        ids = [event.entry_id for event in self._done] + self._ack_only
        if ids:
            pipe.execute_command(b"XACK", self.stream, self.group, *ids)

    def _after_flush(self, done: int, ack_only: int) -> None:
        """Forget what was flushed (more may have been added meanwhile)."""
        if done:
            del self._done[:done]
            self.metrics.processed.inc(done)
            latencies = self._latencies[:done]
            del self._latencies[:done]
            self.metrics.observe_latencies(latencies)
        if ack_only:
            del self._ack_only[:ack_only]

    async def _fast_round_trip(self, now: float, deadline: float | None) -> list[Event]:
        """Mark + ack finished events and read the next batch: one script call."""
        done = self._done
        only = self._ack_only
        n_done = len(done)
        n_only = len(only)
        bucket, current, previous = self.dedupe.current()
        entry_ids = [event.entry_id for event in done]
        event_ids = [event._event_id for event in done]
        args_head = [
            CONSUME.sha.encode(), b"3", self._stream_b, current.encode(), previous.encode(),
            self._group_b, self._name_b, b"%d" % self.read_count,
            b"%d" % self.dedupe.expire_at(bucket), b"%d" % n_done, b"%d" % n_only,
        ]  # fmt: skip
        count = 1 + len(args_head) + 2 * n_done + n_only
        parts = [bulks([b"EVALSHA", *args_head]), bulks(entry_ids), bulks(event_ids), bulks(only)]
        conn = self._conn
        await conn.send(pack_parts(count, parts))
        try:
            reply = await conn.read()
        except NoScriptError:
            parts[0] = bulks([b"EVAL", CONSUME.source.encode(), *args_head[1:]])
            await conn.send(pack_parts(count, parts))
            reply = await conn.read()
        self._after_flush(n_done, n_only)
        duplicates, entries = reply[0], reply[1]
        if duplicates:
            self.metrics.duplicate.inc(duplicates)
        if entries:
            return await self._prepare([], {}, entries, checked=True)
        if duplicates:
            return []  # a batch of duplicates only: read on without blocking
        # Caught up: wait for new entries with a blocking read.
        block = self.block_ms
        heap = self._retry_heap
        if heap:
            block = min(block, max(1, int((heap[0][0] - now) * 1000) + 1))
        if deadline is not None:
            block = min(block, max(1, int((deadline - now) * 1000)))
        block = min(block, max(1, int((self._next_claim - now) * 1000) + 1))
        if self._stopping:
            return []
        await conn.send(
            pack([*self._blocking_read_head, b"BLOCK", block, b"STREAMS", self._stream_b, b">"])
        )
        reply = await conn.read(block / 1000 + 10.0)
        entries = _stream_entries(reply)
        if not entries:
            return []
        return await self._prepare([], {}, entries, checked=False)

    async def _maintenance_round_trip(self, now: float) -> list[Event]:
        """Drain own pending entries, retry due failures, reclaim from dead consumers."""
        pipe = self.redis.pipeline(transaction=False)
        n_done, n_only = len(self._done), len(self._ack_only)
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
        if due:
            for entry_id in due:
                self._retrying.discard(entry_id)
            recovered.extend(e for e in (replies[position] or []) if e)
            position += 1
        if claiming:
            cursor, claimed = replies[position][0], replies[position][1]
            position += 1
            self._claim_cursor = cursor
            recovered.extend(
                e for e in claimed
                if e and e[0] not in self._inflight and e[0] not in self._retrying
            )  # fmt: skip
        if self._draining:
            entries = _stream_entries(replies[position])
            if entries:
                self._drain_cursor = entries[-1][0]
                recovered.extend(
                    e for e in entries if e[0] not in self._inflight and e[0] not in self._retrying
                )
            else:
                self._draining = False
        if not recovered:
            return []
        counts = await self._delivery_counts([e[0] for e in recovered])
        return await self._prepare(recovered, counts, [], checked=False)

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

    async def _prepare(
        self, recovered: list[Any], counts: dict[bytes, int], fresh: list[Any], *, checked: bool
    ) -> list[Event]:
        """Decode entries; route skips/invalid/duplicates; return events to handle.

        ``checked``: the entries already passed the Redis dedupe check (in CONSUME)."""
        events: list[Event] = []
        bad: list[tuple[bytes, Any, BaseException, int]] = []
        skipped: list[bytes] = []
        exhausted: list[tuple[bytes, Any, BaseException, int]] = []
        classes = self._classes
        typed = self._typed
        max_deliveries = self.policy.max_deliveries
        for batch, from_pending in ((recovered, True), (fresh, False)):
            for entry_id, flat in batch:
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
                    and flat[4] == b"correlation_id"
                    and flat[14] == b"payload"
                ):
                    event_id, event_type, cid, payload = flat[1], flat[3], flat[5], flat[15]
                else:
                    fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
                    event_id = fields.get(b"event_id", b"")
                    event_type = fields.get(b"event_type", b"")
                    cid = fields.get(b"correlation_id")
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
                    value = cls.__pydantic_validator__.validate_json(payload)
                except ValidationError as exc:
                    bad.append((entry_id, flat, exc, count))
                    continue
                events.append(Event(self, entry_id, flat, event_id, event_type, cid, value, count))
        if skipped:
            self._ack_only.extend(skipped)
            self.metrics.not_accepted.inc(len(skipped))
        if bad:
            await self._dead_letter(bad, reason="invalid")
        if exhausted:
            await self._dead_letter(exhausted, reason="max_deliveries")
        if events:
            events = await self._drop_duplicates(events, check_redis=not checked)
        return events

    async def _drop_duplicates(self, events: list[Event], *, check_redis: bool) -> list[Event]:
        """Skip events whose id is marked in Redis (unless the script checked already),
        repeated inside the batch, in flight, or finished but not flushed yet."""
        seen: set[bytes] = set()
        if check_redis:
            ids = [event._event_id for event in events]
            _, current, previous = self.dedupe.current()
            data = pack([b"HMGET", current.encode(), *ids]) + pack(
                [b"HMGET", previous.encode(), *ids]
            )
            await self._conn.send(data)
            in_current = await self._conn.read()
            in_previous = await self._conn.read()
            seen = self.dedupe.seen(ids, in_current, in_previous)
        if self._done:
            seen.update(event._event_id for event in self._done)
        if self._inflight:
            seen.update(self._inflight.values())
        inflight = self._inflight
        keep: list[Event] = []
        for event in events:
            eid = event._event_id
            if eid in seen:
                self._skip_duplicate(event)
                continue
            seen.add(eid)
            inflight[event.entry_id] = eid
            keep.append(event)
        return keep

    def _skip_duplicate(self, event: Event) -> None:
        self._ack_only.append(event.entry_id)
        self.metrics.duplicate.inc()
        log.info("agent %s: skipping duplicate event %s (entry %s)", self.agent,
                 event.event_id, event.message_id)  # fmt: skip

    async def _dead_letter(
        self, items: Iterable[tuple[bytes, Any, BaseException, int]], *, reason: str
    ) -> None:
        """XADD each to dead-letters, then XACK them on the source (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        ids: list[bytes] = []
        for entry_id, flat, exc, count in items:
            raw = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
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
            self._inflight.pop(entry_id, None)
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
        self.group_ready = False
        await self.ensure_group()
