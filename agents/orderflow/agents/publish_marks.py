"""Deferred "published" marks of the outbox: many publishes, one store write.

Why: after publishing an outbox row to Redis, its committer used to mark it published
at once, in a second store transaction -- a second commit (an fsync, and with SQLite
the one file writer lock every process shares) on the critical path of every hop, and
more than half of the pipeline's store writes. :class:`PublishedMarks` takes that off
the path: :func:`~orderflow.agents.outbox.publish_outbox` hands it the ids and returns
right after the Redis publish; the ids of everything published meanwhile are written in
the background with one ``Store.mark_published(ids)`` call.

When it writes (a flush):

* ``interval`` seconds after the first id that no flush has taken yet (default
  ``ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS``, 250 ms): short enough that a row is
  marked long before the relay would look at it (its minimum age is 5 s, at least ten
  intervals: the settings refuse less), long enough to gather every hop of a burst into
  one transaction (at 100 orders/s the orders worker publishes ~500 events/s: ~125 per
  flush instead of 500 transactions). 50 ms was tried first: one order at a time
  (`latency.py`, ~55 ms per order) that still made one mark transaction per order and
  process, each holding SQLite's file lock 2.4-3.3 ms while the next hop's commit
  waited for it;
* at once when ``batch`` ids are waiting (``ORDERFLOW_OUTBOX_MARK_BATCH``): then the
  whole batches (the rest waits for the interval). No ``mark_published`` call carries
  more than ``batch`` ids;
* at :meth:`close`, which the process's shutdown calls (the workers' App stop through
  :mod:`orderflow.agents.store_provider`, the API's server stop): a clean stop leaves
  nothing unmarked.

Why this keeps every guarantee of the outbox: a mark only tells the relay "no need to
publish this row again"; it never decides whether an event exists.

* A crash (or SIGKILL) after the publish and before the flush leaves the rows
  unmarked. The relay (:func:`~orderflow.agents.outbox.relay_once`, in the orders
  worker) takes them once they are ``ORDERFLOW_OUTBOX_RELAY_MIN_AGE_SECONDS`` old and
  re-publishes them with ``once=True``: the runtime's marker
  ``orderflow:{<stream>}:published:<event_id>`` is still there (it lives
  ``ORDERFLOW_DEDUPE_TTL_SECONDS``, 24 h; the settings refuse a TTL not far above the
  relay's reach), so nothing is appended twice, and the relay marks them.
* A failed flush (store down, lock held past the deadline) keeps its ids; the next
  flush tries again, after a back-off that doubles up to :data:`MAX_RETRY_SECONDS`.
* Memory is bounded: past ``max_pending`` ids (``ORDERFLOW_OUTBOX_MARK_MAX_PENDING``:
  only reached while the store refuses writes) the oldest ids are dropped and counted
  (``orderflow_outbox_marks_dropped_total``); their rows stay unmarked and the relay
  re-publishes them as no-ops and marks them, as after a crash.
* A row marked late is never pruned early: pruning counts from the mark.

``orderflow_outbox_mark_seconds`` times each ``mark_published`` call (its count is the
number of mark transactions), ``orderflow_outbox_marks_pending`` is the buffer's size,
``orderflow_outbox_mark_failures_total`` counts the background flushes the store refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from itertools import islice

from prometheus_client import Counter, Gauge, Histogram

from orderflow.models.store import Store

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 2.0
"""Longest pause between two attempts while flushes fail: well under the relay's minimum
age, so a store that comes back has the marks written before the relay would look."""

STAGE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
"""Seconds: fine below 10 ms, where one hop's stages live (the goal is 10 ms end to end)."""

OUTBOX_MARK_SECONDS = Histogram(
    "orderflow_outbox_mark_seconds",
    "One Store.mark_published call of the outbox (a flush of deferred marks, or a relay batch)",
    buckets=STAGE_BUCKETS,
)
MARKS_DROPPED = Counter(
    "orderflow_outbox_marks_dropped",
    "Published outbox ids dropped unmarked from a full mark buffer (the relay marks them)",
)
MARK_FAILURES = Counter(
    "orderflow_outbox_mark_failures",
    "Background flushes of deferred outbox marks that the store refused (their ids are kept)",
)
MARKS_PENDING = Gauge(
    "orderflow_outbox_marks_pending",
    "Published outbox ids waiting for their mark in this process",
    multiprocess_mode="livesum",
)


async def mark_now(store: Store, ids: list[str]) -> None:
    """One timed ``mark_published`` call: what every flush (and a caller without a
    buffer) does."""
    started = time.perf_counter()
    await store.mark_published(ids)
    OUTBOX_MARK_SECONDS.observe(time.perf_counter() - started)


class PublishedMarks:
    """Ids of published outbox rows, written to ``store`` in the background, in batches.

    ``add`` is synchronous and never fails; ``flush`` writes what is waiting now (and
    raises the store's error, keeping the ids); ``close`` stops the background work
    after a last flush. One per store per process: every publisher of the process
    shares it, so one transaction carries the marks of all of them.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.25,
        batch: int = 1000,
        max_pending: int = 100_000,
    ) -> None:
        if interval <= 0 or batch < 1 or max_pending < 1:
            raise ValueError("interval must be positive, batch and max_pending at least 1")
        self.store = store
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: dict[str, None] = {}  # an ordered set: oldest first
        self._lock = asyncio.Lock()  # one flush at a time: a batch is written once
        self._full = asyncio.Event()  # wakes the background flush before its interval
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._backing_off = False  # flushes fail: a full buffer must not hurry the retry

    @property
    def pending(self) -> int:
        """Ids waiting for their mark."""
        return len(self._pending)

    def add(self, ids: Iterable[str]) -> None:
        """Remember ``ids`` as published; a flush marks them within ``interval``.

        After :meth:`close` there is no background flush any more: the ids are written
        at once instead (a publish that finishes during shutdown is still marked)."""
        before = len(self._pending)
        self._pending.update(dict.fromkeys(ids))
        if len(self._pending) == before:
            return
        overflow = len(self._pending) - self.max_pending
        if overflow > 0:
            for oldest in list(islice(self._pending, overflow)):
                del self._pending[oldest]
            MARKS_DROPPED.inc(overflow)
            log.warning("outbox marks: %d published id(s) dropped unmarked (buffer full); "
                        "the relay will mark them", overflow)  # fmt: skip
        MARKS_PENDING.set(len(self._pending))
        if self._closed:
            self._task = asyncio.ensure_future(self._flush_quietly())
        elif self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._flush_in_background())
        elif len(self._pending) >= self.batch and not self._backing_off:
            self._full.set()

    async def flush(self) -> int:
        """Write every id waiting now, ``batch`` per ``mark_published`` call; return how
        many were marked. On a store error the unwritten ids stay (a later flush retries)
        and the error propagates."""
        return await self._write(whole_batches=False)

    async def _write(self, *, whole_batches: bool) -> int:
        """Write the ids waiting now, oldest first (with ``whole_batches``, only as many
        full batches as there are); ids added meanwhile wait for the next flush."""
        async with self._lock:
            due = len(self._pending)
            if whole_batches:
                due -= due % self.batch
            marked = 0
            while marked < due:
                ids = list(islice(self._pending, min(self.batch, due - marked)))
                if not ids:  # dropped by a full buffer meanwhile
                    break
                await mark_now(self.store, ids)
                for written in ids:
                    self._pending.pop(written, None)
                marked += len(ids)
                MARKS_PENDING.set(len(self._pending))
            self._backing_off = False
            return marked

    async def _flush_in_background(self) -> None:
        """Flush ``interval`` after the first waiting id (sooner when ``batch`` are
        waiting) until nothing waits; a failed flush is logged and retried with back-off."""
        pause = self.interval
        while self._pending and not self._closed:
            full = not self._backing_off and len(self._pending) >= self.batch
            if not full:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._full.wait()
                        full = True
            self._full.clear()
            if self._closed:
                return  # close() flushes what is left
            was_failing = self._backing_off
            try:
                await self._write(whole_batches=full)
            except Exception as exc:  # the store's error, whatever the adapter: retried
                MARK_FAILURES.inc()
                if not was_failing:
                    log.warning("outbox marks: %d id(s) not marked yet (%s); retrying",
                                len(self._pending), exc)  # fmt: skip
                self._backing_off = True
                pause = min(pause * 2, MAX_RETRY_SECONDS)
            else:
                if was_failing:
                    log.info("outbox marks: written again after a failure")
                pause = self.interval

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            left = len(self._pending)
            log.warning("outbox marks: %d id(s) left unmarked (%s); the relay will "
                        "re-publish them as no-ops and mark them", left, exc)  # fmt: skip

    async def close(self) -> None:
        """Stop the background flush (letting a write in progress finish) and flush what
        is left once; what a failing store leaves unmarked is the relay's, as after a
        crash. Never raises: it runs in shutdown hooks."""
        self._closed = True
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        await self._flush_quietly()
