"""The recovery round trip of a consumer: drain, retry, reclaim, tidy the group.

Off the hot path, one pipelined round trip does whatever is due:

* **drain** our own pending entries (``XREADGROUP ... <cursor>``) at start, after a
  reconnect and after NOGROUP: replies may have been lost, so what Redis says we
  hold is handed over again (it was never acked);
* **retry** failed entries whose back-off has passed (``XCLAIM`` to ourselves, so
  Redis counts the delivery);
* **reclaim** entries idle longer than ``claim_idle_ms`` from consumers presumed
  dead (``XAUTOCLAIM``, following its cursor); when a scan completes, consumers of
  the group that own nothing and have been idle that long are deleted
  (``XGROUP DELCONSUMER``, checked and done in one script so an entry read in between
  cannot be dropped with them).

Entries that come back this way are decoded with Redis's own delivery counts
(``XPENDING``), checked against the dedupe marks, and handed over like new ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow.runtime.acks import AckBuffer
from orderflow.runtime.batch import Batch
from orderflow.runtime.connection import RAW
from orderflow.runtime.decoding import Decoded, EntryDecoder, stream_entries
from orderflow.runtime.dedupe import DedupeMarks
from orderflow.runtime.failures import FailurePolicy
from orderflow.runtime.scripts import LuaScript

log = logging.getLogger("orderflow.consumer")

# Under Redis Cluster the route to a stream breaks too: its slot moved (MOVED; ASK while
# it migrates), the cluster is failing over (CLUSTERDOWN, TRYAGAIN), or the slot map
# names no owner yet. Handled like a lost connection: back off, reconnect to the owner
# the reloaded slot map names, drain our pending entries (a reply may have been lost).
ROUTE_ERRORS = (MovedError, AskError, TryAgainError, ClusterDownError, SlotNotCoveredError)
CONNECTION_ERRORS = (
    RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, *ROUTE_ERRORS,
)  # fmt: skip

# KEYS[1] stream; ARGV[1] group, ARGV[2] our consumer name, ARGV[3] min idle ms.
# Deletes every other consumer with no pending entry idle at least that long; returns
# their names. XINFO CONSUMERS rows are flat field/value lists (RESP2 inside Lua).
_DELETE_DEPARTED = LuaScript(
    """
local deleted = {}
local rows = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, row in ipairs(rows) do
  local info = {}
  for i = 1, #row, 2 do info[row[i]] = row[i + 1] end
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
     and tonumber(info['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted[#deleted + 1] = info['name']
  end
end
return deleted
"""
)


class RecoveringConsumer(Protocol):
    """What the recovery round trip needs of its consumer (:class:`Consumer` has it)."""

    redis: Redis
    stream: str
    group: str
    name: str
    agent: str
    read_count: int
    dedupe: DedupeMarks
    decoder: EntryDecoder
    failures: FailurePolicy
    acks: AckBuffer

    def queue_flush(self, pipe: Any) -> tuple[int, int]: ...

    def after_flush(self, done: int, ack_only: int) -> None: ...

    def busy_entry_ids(self) -> set[bytes]: ...

    async def settle(self, decoded: Decoded, seen: set[bytes]) -> Batch: ...


class Recovery:
    """The drain/claim state of one consumer and its recovery round trip."""

    def __init__(
        self, consumer: RecoveringConsumer, *, claim_idle_ms: int, claim_interval: float
    ) -> None:
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.claim_interval = claim_interval
        self.next_claim = time.monotonic() + claim_interval
        self.draining = True
        self._drain_cursor = b"0-0"
        self._claim_cursor = b"0-0"

    def due(self, now: float) -> bool:
        next_retry = self.consumer.failures.retries.next_due
        return (
            self.draining
            or (next_retry is not None and next_retry <= now)
            or now >= self.next_claim
        )

    def connection_lost(self) -> None:
        """Drain our pending entries first once back, and trust only Redis's dedupe marks:
        after a failover the new master may lack marks the old one acknowledged
        (asynchronous replication), and an id remembered as flushed would then skip an
        event whose effect was lost with them (``AckBuffer.forget_recent``)."""
        self.draining = True
        self._drain_cursor = b"0-0"
        self.consumer.acks.forget_recent()

    def group_lost(self) -> None:
        """The server lost the group (and probably the stream): nothing of ours is pending."""
        self.draining = True
        self._drain_cursor = b"0-0"
        self._claim_cursor = b"0-0"

    async def round_trip(self, now: float) -> Batch | None:
        """Flush finished work and do whatever recovery is due, in one round trip."""
        consumer = self.consumer
        redis, stream, group, name = consumer.redis, consumer.stream, consumer.group, consumer.name
        retries = consumer.failures.retries
        pipe = redis.pipeline(transaction=False)
        counts = consumer.queue_flush(pipe)
        position = len(pipe)
        due = retries.pop_due(now, consumer.read_count)
        if due:
            pipe.execute_command("XCLAIM", stream, group, name, 0, *due, **RAW)
        claiming = now >= self.next_claim and not self.draining
        if claiming:
            self.next_claim = now + self.claim_interval
            pipe.execute_command(
                "XAUTOCLAIM", stream, group, name, self.claim_idle_ms, self._claim_cursor,
                "COUNT", consumer.read_count, **RAW,
            )  # fmt: skip
        if self.draining:
            pipe.execute_command(
                "XREADGROUP", "GROUP", group, name, "COUNT", consumer.read_count,
                "STREAMS", stream, self._drain_cursor, **RAW,
            )  # fmt: skip
        try:
            replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        except BaseException:
            retries.restore(due, now)  # not claimed after all: try again soon
            raise
        consumer.after_flush(*counts)

        # One entry can come back through several of these replies in the same round
        # trip (a due retry is also in the drain read after a reconnect). Each entry
        # must be handed over once: a second copy would be acked as a "duplicate"
        # while the first is still being handled, and a failure of the first would
        # then lose the event.
        recovered: list[Any] = []
        taken: set[bytes] = set()

        def take(entries: Iterable[Any], busy: set[bytes]) -> None:
            for entry in entries:
                if entry and entry[0] not in busy and entry[0] not in taken:
                    taken.add(entry[0])
                    recovered.append(entry)

        if due:
            retries.release(due)
            take(replies[position] or [], set())
            position += 1
        if claiming:
            cursor, claimed = replies[position][0], replies[position][1]
            position += 1
            self._claim_cursor = cursor
            take(claimed, consumer.busy_entry_ids())
            if cursor in (b"0-0", "0-0"):
                await self._delete_departed()
        if self.draining:
            entries = stream_entries(replies[position])
            if entries:
                self._drain_cursor = entries[-1][0]
                take(entries, consumer.busy_entry_ids())
            else:
                self.draining = False
        if not recovered:
            return None
        return await self._prepare(recovered)

    async def _prepare(self, recovered: list[Any]) -> Batch:
        """Delivery counts and dedupe check (one round trip), then decode and settle."""
        consumer = self.consumer
        pipe = consumer.redis.pipeline(transaction=False)
        for entry in recovered:
            entry_id = entry[0]
            pipe.execute_command(
                "XPENDING", consumer.stream, consumer.group, entry_id, entry_id, 1, **RAW
            )
        counts: dict[bytes, int] = {}
        for reply in await pipe.execute():
            for row in reply or []:
                counts[row[0]] = int(row[3])
        decoded = consumer.decoder.decode((), recovered, counts)
        seen: set[bytes] = set()
        if decoded.event_ids:
            pipe = consumer.redis.pipeline(transaction=False)
            consumer.dedupe.add_check(pipe, decoded.event_ids)
            current, previous = await pipe.execute()
            seen = consumer.dedupe.seen(decoded.event_ids, current, previous)
        return await consumer.settle(decoded, seen)

    async def _delete_departed(self) -> None:
        """Remove consumers that own nothing and have not been seen for claim_idle_ms."""
        consumer = self.consumer
        try:
            deleted = await _DELETE_DEPARTED(
                consumer.redis,
                [consumer.stream],
                [consumer.group, consumer.name, self.claim_idle_ms],
            )
        except ResponseError as exc:  # e.g. a server without XINFO in scripts: not fatal
            log.warning("agent %s: could not tidy departed consumers: %s", consumer.agent, exc)
            return
        for departed in deleted or []:
            label = departed.decode() if isinstance(departed, bytes) else str(departed)
            log.info("agent %s: removed departed consumer %s from group %s on %s",
                     consumer.agent, label, consumer.group, consumer.stream)  # fmt: skip
