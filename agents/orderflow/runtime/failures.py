"""The failure policy of one consumer: retry with back-off, then dead-letter.

A failed event stays pending in Redis (never acked). It waits here, in a heap
ordered by due time, for its back-off; when due, the consumer ``XCLAIM``s it to
itself (Redis counts that delivery) and hands it over again. Once Redis's delivery
count reaches ``max_deliveries`` the event is written to ``dead-letters`` with
everything needed to understand and replay it, and acked on its stream in the
same round trip. Entries that cannot be decoded go to dead-letters at once.

Using Redis's own delivery count (not a counter of ours) means the limit holds
across restarts and across consumers of the group.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable

from redis.asyncio import Redis

from orderflow.runtime import deadletter
from orderflow.runtime.connection import is_cluster
from orderflow.runtime.decoding import DeadItem
from orderflow.runtime.metrics import AgentMetrics
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.wire import field_map

log = logging.getLogger("orderflow.consumer")


class RetryQueue:
    """Failed entries waiting for their back-off: a heap of (due monotonic time, id).

    An entry is *waiting* from :meth:`add` until :meth:`release`: in between (also
    while its ``XCLAIM`` is in flight) the consumer must not take it again through
    its drain or claim reads, so :attr:`waiting` is part of its "busy" set."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, bytes]] = []
        self.waiting: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, entry_id: bytes, due: float) -> None:
        heapq.heappush(self._heap, (due, entry_id))
        self.waiting.add(entry_id)

    @property
    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[bytes]:
        """Up to ``limit`` ids due by ``now`` (still *waiting* until released)."""
        heap = self._heap
        due: list[bytes] = []
        while heap and heap[0][0] <= now and len(due) < limit:
            due.append(heapq.heappop(heap)[1])
        return due

    def restore(self, entry_ids: Iterable[bytes], due: float) -> None:
        """Their claim did not happen (connection lost, error reply): try again at ``due``."""
        for entry_id in entry_ids:
            heapq.heappush(self._heap, (due, entry_id))

    def release(self, entry_ids: Iterable[bytes]) -> None:
        """Claimed: the consumer hands them over again."""
        self.waiting.difference_update(entry_ids)

    def clear(self) -> None:
        self._heap.clear()
        self.waiting.clear()


class FailurePolicy:
    """Decides what happens to a failed or undecodable entry of one consumer."""

    def __init__(
        self,
        policy: RetryPolicy,
        metrics: AgentMetrics,
        *,
        agent: str,
        stream: str,
        group: str,
        consumer: str,
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.agent = agent
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.retries = RetryQueue()

    def handler_failed(
        self, entry_id: bytes, delivery_count: int, exc: BaseException, now: float
    ) -> bool:
        """The handler raised on an entry: schedule its retry and return ``False``, or
        return ``True`` when it had its last delivery (the caller dead-letters it)."""
        self.metrics.failed.inc()
        if self.policy.exhausted(delivery_count):
            return True
        delay = self.policy.delay(delivery_count)
        log.warning(
            "agent %s: %s on %s (delivery %d/%d), retrying in %.2fs",
            self.agent, type(exc).__name__, entry_id.decode(), delivery_count,
            self.policy.max_deliveries, delay,
        )  # fmt: skip
        self.metrics.retried.inc()
        self.retries.add(entry_id, now + delay)
        return False

    async def dead_letter(self, redis: Redis, items: Iterable[DeadItem], *, reason: str) -> None:
        """``XADD`` each to dead-letters, then ``XACK`` them on the source, in one round trip.

        Not atomic (dead-letters and the stream are in different Cluster slots): a crash
        in between leaves the entry pending, so it is dead-lettered again later — a
        duplicate dead letter, never a lost event. Under Cluster the two keys live on
        different nodes, and a cluster pipeline sends to each node at once, so there the
        ``XACK`` waits for the ``XADD`` replies (two round trips) to keep that order."""
        pipe = redis.pipeline(transaction=False)
        ids: list[bytes] = []
        for entry_id, flat, exc, count in items:
            fields = deadletter.dead_letter_fields(
                stream=self.stream,
                entry_id=entry_id.decode(),
                group=self.group,
                consumer=self.consumer,
                raw=field_map(flat),
                error_type=type(exc).__name__,
                error_message=str(exc),
                traceback=deadletter.short_traceback(exc) if exc.__traceback__ else "",
                delivery_count=count,
            )
            deadletter.queue_dead_letter(pipe, fields)
            ids.append(entry_id)
            self.metrics.dead_lettered(reason)
            log.error("agent %s: entry %s of %s dead-lettered (%s: %s)", self.agent,
                      entry_id.decode(), self.stream, type(exc).__name__, exc)  # fmt: skip
        if not ids:
            return
        if is_cluster(redis):
            await pipe.execute()
            pipe = redis.pipeline(transaction=False)
        pipe.execute_command("XACK", self.stream, self.group, *ids)
        await pipe.execute()
