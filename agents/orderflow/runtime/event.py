"""One delivered stream entry, as the agent sees it (``stream.current_event``).

Kept deliberately lazy: the consumer fills in only raw bytes per entry
(``__slots__``, no dict, no string decoding); the full :class:`Envelope` is
built on first access. The event is also the *scope* for correlation
(:mod:`orderflow.runtime.context`): sends made while handling it inherit its
correlation id and name it as their cause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar, cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from orderflow.runtime.connection import is_cluster
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.protocols import Delivery
from orderflow.runtime.records import Record
from orderflow.runtime.slot_transactions import slot_clients, slot_pipeline
from orderflow.runtime.wire import field_map

T = TypeVar("T", bound=Record)


class Event(Generic[T]):
    """``value`` is the decoded record (typed by the topic); the envelope is parsed on
    first access; ``delivery_count`` is Redis's own count (1 on the first delivery)."""

    __slots__ = (
        "_consumer",
        "_correlation_id",
        "_envelope",
        "_event_id",
        "_event_type",
        "delivery_count",
        "entry_id",
        "fields",
        "value",
    )

    def __init__(
        self,
        consumer: Delivery | None,
        entry_id: bytes,
        fields: list[bytes] | dict[bytes, bytes],
        event_id: bytes,
        event_type: bytes,
        correlation_id: bytes | None,
        value: T,
        delivery_count: int = 1,
    ) -> None:
        self._consumer = consumer
        self.entry_id = entry_id
        self.fields = fields
        self._event_id = event_id
        self._event_type = event_type
        self._correlation_id = correlation_id
        self.value = value
        self.delivery_count = delivery_count
        self._envelope: Envelope | None = None

    # --- identity -----------------------------------------------------------
    @property
    def message_id(self) -> str:
        """The stream entry id (``1700000000000-0``)."""
        return self.entry_id.decode()

    @property
    def stream(self) -> str:
        return self._consumer.stream if self._consumer is not None else ""

    @property
    def group(self) -> str:
        return self._consumer.group if self._consumer is not None else ""

    @property
    def event_id(self) -> str:
        return self._event_id.decode()

    @property
    def event_type(self) -> str:
        return self._event_type.decode()

    @property
    def correlation_id(self) -> str | None:
        cid = self._correlation_id
        return cid.decode() if cid else self.event_id

    @property
    def child_causation_id(self) -> str | None:
        return self.event_id

    @property
    def key(self) -> str | None:
        return self.envelope.key

    def fields_dict(self) -> dict[bytes, bytes]:
        return field_map(self.fields)

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:
            self._envelope = Envelope.from_fields(self.fields_dict())
        return self._envelope

    # --- exactly-once Redis side effects ------------------------------------
    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[Pipeline]:
        """A MULTI/EXEC pipeline that also writes this event's dedupe mark.

        Commands queued on the yielded pipeline commit together with the
        "processed" mark, so a redelivered duplicate finds the mark and is
        skipped: the Redis-side effect happens exactly once."""
        if self._consumer is None:
            raise RuntimeError("event.atomic() needs an event delivered by a consumer")
        consumer = self._consumer
        redis = consumer.redis
        # Under Cluster: a one-node MULTI on the stream's master (slot_transactions says why).
        cluster = cast(RedisCluster, redis) if is_cluster(redis) else None
        if cluster is None:
            pipe = redis.pipeline(transaction=True)
        else:
            pipe = await slot_pipeline(cluster, consumer.stream)
        yield pipe
        consumer.dedupe.add_marks(pipe, [self._event_id])
        try:
            await pipe.execute()
        except BaseException:
            if cluster is not None:
                await slot_clients(cluster).forget()
            raise

    def __repr__(self) -> str:
        return f"<Event {self.event_type} {self.event_id} entry={self.message_id}>"
