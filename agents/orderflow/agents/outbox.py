"""Publishing the transactional outbox: the half of the outbox that talks to Redis.

The store writes outgoing events in the same transaction as the business change
(see :mod:`orderflow.models.store`). This module moves them to their streams afterwards:
once right after the commit (:func:`publish_outbox`, called by the use case that
committed) and again from a relay (:func:`relay_once`, a timer in the orders
worker) for whatever a crash or a Redis outage left unpublished.

Publishing is *exactly once per event id on the stream*: a Lua script sets a
marker key ``orderflow:{<stream>}:published:<event_id>`` and appends the entry in
one atomic step, so the relay re-publishing a message whose first publish
succeeded just before a crash (or racing the API's own publish) adds nothing.
Consumers dedupe by event id as well; the marker also keeps fan-out readers
without a consumer group (the WebSocket gateway) from seeing a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Generic, Protocol, TypeVar

import redis.asyncio as aioredis
from prometheus_client import Counter

from orderflow.agents.settings import get_settings
from orderflow.models.store import OutboxMessage, Store
from orderflow.runtime import Envelope, Record, keys

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


# KEYS[1] stream, KEYS[2] marker; ARGV[1] marker TTL s, ARGV[2] approximate maxlen
# (0: no cap), ARGV[3..] flat field/value pairs of the envelope. Returns the entry id,
# or false when this event id was already published.
_PUBLISH_ONCE_LUA = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return false
end
if tonumber(ARGV[2]) > 0 then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
"""


def published_marker_key(stream: str, event_id: str) -> str:
    """Marker that ``event_id`` was appended to ``stream``.

    Its hash tag is the stream's name, so marker and stream share a Cluster slot
    (a key without braces hashes its whole name), as one Lua script needs.
    """
    return keys.stream_key(stream, f"published:{event_id}")


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
    event being handled) because a store may build messages in a worker thread
    where the context is not the handler's. The outbox id is the event id: one
    row per event, easy to follow in logs.
    """
    envelope = Envelope.new(
        value, source=source, key=key, correlation_id=correlation_id, causation_id=causation_id
    )
    return OutboxMessage(id=envelope.event_id, stream=stream, envelope=envelope)


T = TypeVar("T")


class MessageRecorder(Generic[T]):
    """Wraps an outbox-message factory handed to the store and keeps its last result.

    Stores call the factory inside their transaction (only there is the new
    order, delivery or ``previous`` status known) and may call it again when
    they retry the transaction; the last call's messages are the committed ones,
    which the caller then publishes.
    """

    def __init__(self, build: Callable[[T], Sequence[OutboxMessage]]) -> None:
        self._build = build
        self.messages: list[OutboxMessage] = []

    def __call__(self, subject: T) -> list[OutboxMessage]:
        self.messages = list(self._build(subject))
        return self.messages


async def publish_outbox(
    redis: aioredis.Redis,
    store: Store,
    messages: Sequence[OutboxMessage],
    *,
    path: str = "direct",
) -> int:
    """Append each message's envelope to its stream, then mark them published.

    Returns how many entries were newly appended (already-published event ids
    are skipped). All messages go in one pipelined round trip. If Redis fails,
    nothing is marked and the error propagates; the relay will retry. ``path``
    labels the ``orderflow_outbox_published`` metric (``direct`` or ``relay``).
    """
    if not messages:
        return 0
    settings = get_settings()
    pipe = redis.pipeline(transaction=False)
    for message in messages:
        pipe.eval(
            _PUBLISH_ONCE_LUA,
            2,
            message.stream,
            published_marker_key(message.stream, message.envelope.event_id),
            settings.dedupe_ttl_seconds,
            settings.stream_maxlen,
            *chain.from_iterable(message.envelope.to_fields().items()),
        )
    results = await pipe.execute()
    await store.mark_published([message.id for message in messages])
    appended = sum(1 for result in results if result)
    OUTBOX_PUBLISHED.labels(path).inc(appended)
    if appended < len(messages):
        OUTBOX_ALREADY_PUBLISHED.inc(len(messages) - appended)
    log.debug("outbox: published %d of %d message(s)", appended, len(messages))
    return appended


async def relay_once(
    redis: aioredis.Redis, store: Store, min_age_seconds: float, *, batch: int = 100
) -> int:
    """Publish outbox messages left unpublished for at least ``min_age_seconds``.

    The age threshold keeps the relay out of the way of the normal path (the
    API publishes right after commit); the marker makes a race harmless anyway.
    Drains in batches of ``batch`` and returns how many messages were handled.
    """
    handled = 0
    while True:
        pending = await store.outbox_pending(limit=batch, min_age_seconds=min_age_seconds)
        if not pending:
            return handled
        await publish_outbox(redis, store, pending, path="relay")
        handled += len(pending)
        if len(pending) < batch:
            return handled
