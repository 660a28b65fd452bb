"""Publishing the transactional outbox: the half of the outbox that talks to Redis.

The store writes outgoing events in the same transaction as the business change
(see :mod:`orderflow.models.store`) and returns the rows it wrote. This module moves
them to their streams afterwards: once right after the commit (:func:`publish_outbox`,
called by whoever committed) and again from a relay (:func:`relay_once`, a timer in
the orders worker) for whatever a crash or a Redis outage left unpublished;
:class:`RelaySchedule` decides when the relay looks (a periodic poll, and soon
after a commit the store announces through ``Store.wait_for_outbox``).

The "published" mark that follows a publish is deferred: given the process's
:class:`~orderflow.agents.publish_marks.PublishedMarks` (the API, the orders and the
delivery workers pass theirs), :func:`publish_outbox` returns right after the Redis
publish and the buffer writes the marks of many publishes in one store transaction a
moment later (the correctness argument is in :mod:`orderflow.agents.publish_marks`).
Without one (tools, tests, or ``ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS=0``) it marks
at once, in its own transaction.

Publishing goes through the runtime (``App.send_envelopes(..., once=True)``), so
every stream's ``MAXLEN`` cap applies and each event id is appended *once per
stream*: the relay re-publishing a message whose first publish succeeded just before
a crash (or racing the API's own publish) adds nothing (see
:mod:`orderflow.runtime.publish`). Consumers dedupe by event id as well; the
once-only publish also keeps group-less readers (the WebSocket gateway) from seeing a
duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from orderflow.agents.publish_marks import STAGE_BUCKETS, PublishedMarks, mark_now
from orderflow.agents.topics import declare_topic
from orderflow.models.store import OutboxMessage, Store, StoreUnavailable
from orderflow.models.store.deadline import current_deadline, seconds_left
from orderflow.runtime import App, Envelope, Record, Topic

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter(
    "orderflow_outbox_published",
    "Outbox messages appended to their stream, by path (direct after commit, or relay)",
    ["path"],
)
OUTBOX_ALREADY_PUBLISHED = Counter(
    "orderflow_outbox_already_published",
    "Outbox publishes skipped because the event id was already on its stream",
)
OUTBOX_PUBLISH_SECONDS = Histogram(
    "orderflow_outbox_publish_seconds",
    "One pipelined Redis publish of a batch of outbox messages (after a commit, or a relay batch)",
    buckets=STAGE_BUCKETS,
)


class Cause(Protocol):
    """The event a message is a consequence of (an ``Event`` or an ``Envelope``)."""

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def event_id(self) -> str: ...


def outbox_message(
    stream: str,
    value: Record,
    *,
    source: str,
    key: str | None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> OutboxMessage:
    """Wrap ``value`` in an envelope bound for ``stream``.

    Callers pass the correlation and causation ids explicitly (the ids of the
    event being handled) because a store may build messages in a worker thread.
    The outbox id is the event id: one row per event, easy to follow in logs.
    """
    envelope = Envelope.new(
        value, source=source, key=key, correlation_id=correlation_id, causation_id=causation_id
    )
    return OutboxMessage(id=envelope.event_id, stream=stream, envelope=envelope)


def outbox_topic(app: App, stream: str) -> Topic[Any]:
    """The app's topic for ``stream``: the one it declared (a consumer may accept a
    subset of the stream's records; the envelope is published as is either way), or a
    new declaration with every record the stream carries. A row names the topic, not a
    partition: the topic places the envelope by its key (the order id) when it is sent,
    so a row written before a change of ``ORDERFLOW_TOPIC_PARTITIONS`` goes where the
    order's other events go now."""
    return app.topics.get(stream) or declare_topic(app, stream)


async def publish_outbox(
    app: App,
    store: Store,
    messages: Sequence[OutboxMessage],
    *,
    path: str = "direct",
    marks: PublishedMarks | None = None,
) -> int:
    """Append each message's envelope to its stream (once per event id), then mark
    them published: handed to ``marks`` (written in the background, see
    :mod:`orderflow.agents.publish_marks`), or at once in ``store`` without it.

    Returns how many entries were newly appended. All messages go in one pipelined
    round trip. If Redis fails, nothing is marked and the error propagates; the relay
    will retry. ``path`` labels the ``orderflow_outbox_published`` metric (``direct``
    or ``relay``).
    """
    if not messages:
        return 0
    items = [(outbox_topic(app, message.stream), message.envelope) for message in messages]
    started = time.perf_counter()
    results = await app.send_envelopes(items, once=True)
    OUTBOX_PUBLISH_SECONDS.observe(time.perf_counter() - started)
    ids = [message.id for message in messages]
    if marks is None:
        await mark_now(store, ids)
    else:
        marks.add(ids)
    appended = sum(1 for result in results if result)
    OUTBOX_PUBLISHED.labels(path).inc(appended)
    if appended < len(messages):
        OUTBOX_ALREADY_PUBLISHED.inc(len(messages) - appended)
    log.debug("outbox: published %d of %d message(s)", appended, len(messages))
    return appended


async def publish_committed(
    app: App,
    store: Store,
    messages: Sequence[OutboxMessage],
    *,
    what: str,
    marks: PublishedMarks | None = None,
) -> None:
    """``publish_outbox`` right after a commit, within what is left of the caller's
    deadline; a failure is logged (naming ``what`` was committed), never raised.

    Committed: whatever fails now (Redis, the deadline, the store while marking the
    rows published, when there are no ``marks`` to defer it) must not turn the
    caller's answer into an error -- the relay in the orders worker publishes the rows
    later.
    """
    if not messages:
        return
    until = current_deadline()
    try:
        async with asyncio.timeout(None if until is None else seconds_left(until)):
            await publish_outbox(app, store, messages, marks=marks)
    except (RedisError, OSError, TimeoutError, StoreUnavailable) as exc:
        log.warning("%s committed but not published (%s); the outbox relay will publish it",
                    what, exc)  # fmt: skip


async def relay_once(
    app: App,
    store: Store,
    min_age_seconds: float,
    *,
    batch: int = 100,
    marks: PublishedMarks | None = None,
) -> int:
    """Publish outbox messages left unpublished for at least ``min_age_seconds``.

    The age threshold keeps the relay out of the way of the normal path (the
    committer publishes right after commit); the once-only publish makes a race
    harmless anyway. Drains in batches of ``batch``; returns how many were handled.
    Each batch is marked before the next is read (else the next read would find the
    same rows): with ``marks``, by flushing them, so the process's deferred marks
    ride in the same transaction.
    """
    handled = 0
    while True:
        pending = await store.outbox_pending(limit=batch, min_age_seconds=min_age_seconds)
        if not pending:
            return handled
        await publish_outbox(app, store, pending, path="relay", marks=marks)
        if marks is not None:
            await marks.flush()
        handled += len(pending)
        if len(pending) < batch:
            return handled


class RelaySchedule:
    """When the relay looks at the outbox: every ``interval`` seconds (the poll, a safety
    net), and ``min_age`` seconds after a commit announced by the store.

    The relay only takes rows at least ``min_age`` old (younger ones are their
    committer's to publish), so an announced commit is worth a look exactly when
    its rows come of age -- not at once, and not up to ``interval`` later. With
    PostgreSQL the announcement is a ``NOTIFY``, so a row a crash left behind is
    relayed ``min_age`` after its commit whatever the poll interval; stores that
    cannot announce (``wait_for_outbox`` only sleeps) get the poll alone, as before.

    The caller loops: ``wait_for_outbox(wait_seconds())``, :meth:`announced` if
    it returned ``True``, and a pass (after :meth:`relayed`) when :meth:`due`.
    ``clock`` is monotonic time, a parameter so the schedule can be tested
    without waiting.
    """

    def __init__(
        self, interval: float, min_age: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.min_age = min_age
        self._clock = clock
        self._next_poll = clock()  # the first pass at once: rows left by an earlier run
        self._first: float | None = None  # oldest announcement no pass has covered yet
        self._last: float | None = None  # newest announcement

    def _due_at(self) -> float:
        if self._first is None:
            return self._next_poll
        return min(self._next_poll, self._first + self.min_age)

    def wait_seconds(self) -> float:
        """How long to wait for an announcement before the next pass is due."""
        return max(0.0, self._due_at() - self._clock())

    def announced(self) -> None:
        """The store said outbox rows were committed (by now)."""
        now = self._clock()
        if self._first is None:
            self._first = now
        self._last = now

    def due(self) -> bool:
        return self._clock() >= self._due_at()

    def relayed(self) -> None:
        """A pass starts now. It covers rows older than ``min_age``: announcements younger
        than that are kept, and bring the following pass forward."""
        now = self._clock()
        self._next_poll = now + self.interval
        if self._last is not None and self._last > now - self.min_age:
            self._first = self._last
        else:
            self._first = self._last = None
