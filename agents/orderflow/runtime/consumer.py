"""THE consumer loop: one group consumer on one stream, feeding an agent.

The hot path is one write per batch on a connection of the consumer's own:
``SADD`` the dedupe marks of the events the agent finished, ``XACK`` them and
``XREADGROUP ... COUNT n BLOCK ms ... >`` the next batch. That write is sent
*before* the agent starts on the current batch (prefetch), so the server works
while the agent does; the dedupe check of a batch (two ``SMISMEMBER``, only for entries
that may be duplicates: :mod:`orderflow.runtime.fresh_check`) rides in the same write.
Nothing per event goes to Redis, and no task is created per event.

Around it, each part in a module of its own (acks, failures, dedupe, fresh_check,
decoding, recovery) that this state machine drives (docs/runtime.md explains why):

1. At start, after a reconnect or NOGROUP: drain our pending entries, then read ``>``.
2. Every ``claim_interval`` an ``XAUTOCLAIM`` takes over entries idle longer than
   ``claim_idle_ms`` (their consumer died); idle consumers owning nothing are deleted.
3. A failed event stays pending, retried after its back-off, dead-lettered after
   ``max_deliveries``; an entry that cannot be decoded is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from orderflow.runtime.acks import AckBuffer
from orderflow.runtime.batch import Batch
from orderflow.runtime.decoding import Decoded, EntryDecoder, event_id_of, stream_entries
from orderflow.runtime.dedupe import DedupeMarks
from orderflow.runtime.event import Event
from orderflow.runtime.failures import FailurePolicy
from orderflow.runtime.fresh_check import FreshCheck
from orderflow.runtime.metrics import AgentMetrics
from orderflow.runtime.records import Record
from orderflow.runtime.recovery import CONNECTION_ERRORS, ROUTE_ERRORS, Recovery
from orderflow.runtime.retry import RetryPolicy, reconnect_delays
from orderflow.runtime.skiplog import SkipLog
from orderflow.runtime.stream import StreamEnded
from orderflow.runtime.wire import PrivateConnection, bulks, pack, pack_parts

log = logging.getLogger("orderflow.consumer")


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
        self.read_count = read_count
        self.block_ms = block_ms
        self.start_id = start_id
        self.dedupe = DedupeMarks(group, stream, dedupe_ttl)
        self.metrics = AgentMetrics(agent)
        self.decoder = EntryDecoder(accepted, policy.max_deliveries)
        self.failures = FailurePolicy(
            policy, self.metrics, agent=agent, stream=stream, group=group, consumer=name
        )
        self.acks = AckBuffer(recent_limit=4 * read_count)
        self.recovery = Recovery(self, claim_idle_ms=claim_idle_ms, claim_interval=claim_interval)
        self.skips = SkipLog(agent, stream)
        self.fresh = FreshCheck(agent, stream)
        self._conn = PrivateConnection(redis, stream)
        self._stream_b = stream.encode()
        self._group_b = group.encode()
        self._read_head = (
            b"XREADGROUP", b"GROUP", self._group_b, name.encode(), b"COUNT", b"%d" % read_count,
        )  # fmt: skip
        self._latencies: list[float] = []  # streams append (bound method): clear in place
        # A read already written (prefetch): (done, ack-only, flush commands, block ms).
        self._outstanding: tuple[int, int, int, int] | None = None
        self._handed_at = 0.0
        # Entries read whose dedupe check is written but not read yet: (entries, ids).
        self._pending: tuple[list[Any], list[bytes]] | None = None
        self._stopping = False
        self._reconnect = reconnect_delays()
        self.connection_failures = 0  # round trips failed in a row; readiness reads it
        self.group_ready = False

    # ------------------------------------------------------------------ setup
    async def ensure_group(self) -> None:
        """XGROUP CREATE ... MKSTREAM, tolerating BUSYGROUP (idempotent)."""
        try:
            await self.redis.execute_command(
                "XGROUP", "CREATE", self.stream, self.group, self.start_id, "MKSTREAM"
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

    @property
    def latencies(self) -> list[float]:
        return self._latencies

    async def failed(self, event: Event[Any], exc: BaseException) -> None:
        """The handler raised: retry later, or dead-letter after max_deliveries."""
        count = event.delivery_count
        if self.failures.handler_failed(event.entry_id, count, exc, time.monotonic()):
            items = [(event.entry_id, event.fields, exc, count)]
            await self.failures.dead_letter(self.redis, items, reason="max_deliveries")

    def replace_handed(self, batch: Batch, parts: list[Batch]) -> None:
        """The dispatcher split ``batch`` for N bodies: track the parts instead."""
        self.acks.replace(batch, parts)

    def busy_entry_ids(self) -> set[bytes]:
        """Entries we must not take again: in the agent's hands or waiting to be retried."""
        return self.acks.busy_entry_ids() | self.failures.retries.waiting

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
                if self.fresh.watermark is None:
                    await self.fresh.refresh(self.redis)
                now = time.monotonic()
                self.acks.collect()
                if self._outstanding is None and self._pending is None and self.recovery.due(now):
                    events = await self.recovery.round_trip(now)
                else:
                    events = await self._fast_round_trip(now, deadline)
                self.connection_failures = 0
            except CONNECTION_ERRORS as exc:
                await self._forget_in_flight()
                await self._connection_lost(exc)
                continue
            except ResponseError as exc:
                await self._forget_in_flight()
                if "NOGROUP" in str(exc):
                    log.warning("agent %s: group %s on %s is gone; re-creating", self.agent,
                                self.group, self.stream)  # fmt: skip
                    self.failures.retries.clear()
                    self.recovery.group_lost()
                    self.fresh.invalidate()
                    self.group_ready = False  # the loop re-creates it (and retries)
                else:  # e.g. WRONGTYPE: say so loudly, keep trying, never spin
                    log.error("agent %s: redis refused a command: %s", self.agent, exc)
                    await self._connection_lost(exc)
                continue
            except asyncio.CancelledError:
                await self._forget_in_flight()  # a read may be half done
                raise
            if events is not None and len(events):
                self.acks.hand(events)
                self._handed_at = time.monotonic()
                return events
            if deadline is not None and time.monotonic() >= deadline:
                return None

    async def _forget_in_flight(self) -> None:
        self._outstanding = None
        self._pending = None
        await self._conn.reset()

    async def flush(self) -> None:
        """Ack + mark everything finished so far (used at shutdown)."""
        self.acks.collect()
        if not self.acks:
            return
        for attempt in range(3):
            try:
                pipe = self.redis.pipeline(transaction=False)
                counts = self.queue_flush(pipe)
                await pipe.execute()
                self.after_flush(*counts)
                return
            except CONNECTION_ERRORS as exc:
                log.warning("agent %s: final ack failed (%s)", self.agent, exc)
                await asyncio.sleep(0.2 * (attempt + 1))

    def queue_flush(self, pipe: Any) -> tuple[int, int]:
        """Queue marks + acks of what is finished; returns what :meth:`after_flush` takes."""
        acks = self.acks
        if acks.done_event_ids:
            self.dedupe.add_marks(pipe, acks.done_event_ids)
        ids = acks.done_entry_ids + acks.ack_only
        if ids:
            pipe.execute_command("XACK", self.stream, self.group, *ids)
        return len(acks.done_entry_ids), len(acks.ack_only)

    def after_flush(self, done: int, ack_only: int) -> None:
        """Forget what was flushed; publish the counts and latencies it carried."""
        self.acks.flushed(done, ack_only)
        if done:
            self.metrics.processed.inc(done)
        if self._latencies:
            self.metrics.observe_latencies(self._latencies)
            self._latencies.clear()

    def _block_ms(self, now: float, deadline: float | None) -> int:
        """BLOCK for the read: bounded by block_ms, the next retry, the next claim, max_wait."""
        block = self.block_ms
        next_due = self.failures.retries.next_due
        if next_due is not None:
            block = min(block, int((next_due - now) * 1000) + 1)
        if deadline is not None:
            block = min(block, int((deadline - now) * 1000))
        block = min(block, int((self.recovery.next_claim - now) * 1000) + 1)
        return max(1, block)

    def _build_read(self, now: float, deadline: float | None, *, block: bool = True) -> bytes:
        """SADD marks + EXPIREAT + XACK (what is finished) + XREADGROUP, as one write."""
        acks = self.acks
        n_done, n_only = len(acks.done_entry_ids), len(acks.ack_only)
        out: list[bytes] = []
        flush_cmds = 0
        if n_done:
            out.append(self.dedupe.marks_command(acks.done_event_ids))
            flush_cmds += 2
        if n_done or n_only:
            head = bulks([b"XACK", self._stream_b, self._group_b])
            ids = [head, bulks(acks.done_entry_ids), bulks(acks.ack_only)]
            out.append(pack_parts(3 + n_done + n_only, ids))
            flush_cmds += 1
        if block:
            block_ms = self._block_ms(now, deadline)
            read: list[bytes | int] = [*self._read_head, b"BLOCK", block_ms]
            read += [b"STREAMS", self._stream_b, b">"]
        else:  # look-ahead read: answers at once, empty or not
            block_ms = 0
            read = [*self._read_head, b"STREAMS", self._stream_b, b">"]
        out.append(pack(read))
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
        self.after_flush(n_done, n_only)
        return reply

    def _may_prefetch(self, now: float, busy_seconds: float) -> bool:
        """Write the next read before handing this batch over, unless the agent is
        slow (prefetched entries would idle in our PEL) or other work is due."""
        if self._stopping or busy_seconds > 1.0:
            return False
        next_due = self.failures.retries.next_due
        if next_due is not None and next_due <= now + 0.05:
            return False
        return now + 0.05 < self.recovery.next_claim

    async def _fast_round_trip(self, now: float, deadline: float | None) -> Batch | None:
        """The steady state is a two-stage pipeline on the private connection:

        call k:  read the dedupe check of batch k (sent during call k-1)
                 read the look-ahead read of batch k+1 (sent with it)
                 send the check of batch k+1 + a look-ahead read of batch k+2
                   (carrying the marks + acks of what the agent finished)
                 decode batch k, drop duplicates, hand it over
        so the server works while we decode and the agent handles batch k, and
        no reply is waited for. When the stream runs dry the look-ahead comes back
        empty and the next call falls back to a blocking read. A batch needing no
        check is handed over at once; its look-ahead is read by the next call."""
        conn = self._conn
        busy_seconds = now - self._handed_at  # how long the agent took for the last batch
        if self._pending is None:
            if self._outstanding is None:
                await conn.send(self._build_read(now, deadline))
            entries = stream_entries(await self._read_outstanding())
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
            if self._outstanding is not None:  # written with the check: its reply follows
                upcoming = stream_entries(await self._read_outstanding())
                if upcoming:
                    prefetch = self._may_prefetch(now, busy_seconds)
                    await self._send_check(upcoming, prefetch, deadline)
        return await self.settle(self.decoder.decode(entries), seen)

    async def _send_check(self, entries: list[Any], prefetch: bool, deadline: float | None) -> None:
        """Write the check of ``entries`` that need one, maybe a look-ahead read (without a
        check to ride with, only after a full read: an empty one would cost a wake-up)."""
        ids = self.fresh.ids_to_check(entries, event_id_of)
        data = self.dedupe.check_command(ids) if ids else b""
        if prefetch and (ids or len(entries) >= self.read_count):
            data += self._build_read(time.monotonic(), deadline, block=False)
        if data:
            await self._conn.send(data)
        self._pending = (entries, ids)

    async def settle(self, decoded: Decoded, seen: set[bytes]) -> Batch:
        """Ack skipped entries, dead-letter bad ones, drop duplicates (``seen``: ids
        marked in Redis); returns the events to hand to the agent."""
        if decoded.trimmed:
            self.acks.ack_only.extend(decoded.trimmed)
            self.metrics.trimmed.inc(len(decoded.trimmed))
        if decoded.not_accepted:
            self.acks.ack_only.extend(entry_id for entry_id, _ in decoded.not_accepted)
            self.metrics.not_accepted.inc(len(decoded.not_accepted))
            self.skips.not_accepted(decoded.not_accepted)
        if decoded.invalid:
            await self.failures.dead_letter(self.redis, decoded.invalid, reason="invalid")
        if decoded.exhausted:
            await self.failures.dead_letter(self.redis, decoded.exhausted, reason="max_deliveries")
        batch = Batch(
            self, decoded.entries, decoded.values, decoded.entry_ids, decoded.event_ids,
            decoded.counts,
        )  # fmt: skip
        return self._drop_duplicates(batch, seen) if len(batch) else batch

    def _drop_duplicates(self, batch: Batch, seen: set[bytes]) -> Batch:
        """Skip events marked in Redis (``seen``), repeated inside the batch, still in
        the agent's hands, finished but not flushed yet, or flushed lately."""
        acks = self.acks
        if acks.done_event_ids or acks.handed:
            seen |= acks.owned_event_ids(self.failures.retries.waiting)
        recent, recent_old = acks.recent_sets
        keep: list[int] = []
        for index, eid in enumerate(batch.event_ids):
            if eid in seen or eid in recent or eid in recent_old:
                acks.ack_only.append(batch.entry_ids[index])
                self.metrics.duplicate.inc()
                log.info("agent %s: skipping duplicate event %s (entry %s)", self.agent,
                         eid.decode(), batch.entry_ids[index].decode())  # fmt: skip
                continue
            seen.add(eid)
            keep.append(index)
        return batch if len(keep) == len(batch) else batch.subset(keep)

    # ------------------------------------------------------------- failures
    async def _connection_lost(self, exc: BaseException) -> None:
        self.connection_failures += 1
        self.metrics.reconnects.inc()
        delay = self._reconnect.delay(self.connection_failures)
        what = "slot moved or failing over" if isinstance(exc, ROUTE_ERRORS) else "unreachable"
        log.warning("agent %s: redis %s (%s: %s); retrying in %.2fs", self.agent, what,
                    type(exc).__name__, exc, delay)  # fmt: skip
        self.recovery.connection_lost()  # replies may have been lost: drain once back
        self.fresh.invalidate()  # and a failover may have moved the group back
        await asyncio.sleep(delay)
