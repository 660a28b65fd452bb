"""A batch of decoded entries handed to an agent, tracked by position.

Why positions and not per-event bookkeeping: an agent finishes events in order,
so "done" is one integer per batch (``done_upto``) and acking is a slice. The
per-event cost of the hot loop is then an index increment; :class:`Event`
objects are only built when the agent asks for one (``stream.current_event``).
"""

from __future__ import annotations

import zlib
from typing import Any

from orderflow.runtime.decoding import is_envelope_layout
from orderflow.runtime.event import Event
from orderflow.runtime.protocols import Delivery
from orderflow.runtime.records import Record
from orderflow.runtime.wire import field_map


class Batch:
    __slots__ = (
        "_events",
        "acked_upto",
        "consumer",
        "counts",
        "done_upto",
        "entries",
        "entry_ids",
        "event_ids",
        "failed",
        "values",
    )

    def __init__(
        self,
        consumer: Delivery | None,
        entries: list[Any],
        values: list[Record],
        entry_ids: list[bytes],
        event_ids: list[bytes],
        counts: list[int] | None = None,
    ) -> None:
        self.consumer = consumer
        self.entries = entries  # [entry id, flat fields] as read
        self.values = values
        self.entry_ids = entry_ids
        self.event_ids = event_ids
        self.counts = counts  # delivery counts; None = first delivery of every entry
        self.done_upto = 0  # entries before this index are finished (except `failed`)
        self.acked_upto = 0  # entries before this index were handed to the ack buffer
        self.failed: set[int] = set()
        self._events: dict[int, Event[Any]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def event(self, index: int) -> Event[Any]:
        event = self._events.get(index)
        if event is None:
            flat = self.entries[index][1]
            if is_envelope_layout(flat):
                event_type, cid = flat[3], flat[5]
            else:
                fields = field_map(flat)
                event_type, cid = fields.get(b"event_type", b""), fields.get(b"correlation_id")
            event = Event(
                self.consumer,
                self.entry_ids[index],
                flat,
                self.event_ids[index],
                event_type,
                cid,
                self.values[index],
                self.counts[index] if self.counts is not None else 1,
            )
            self._events[index] = event
        return event

    def pending_entry_ids(self) -> list[bytes]:
        """Entries not yet moved to the ack buffer (in the agent's hands or queued)."""
        return self.entry_ids[self.acked_upto :]

    def pending_event_ids(self) -> list[bytes]:
        return self.event_ids[self.acked_upto :]

    def subset(self, indexes: list[int]) -> Batch:
        counts = self.counts
        return Batch(
            self.consumer,
            [self.entries[i] for i in indexes],
            [self.values[i] for i in indexes],
            [self.entry_ids[i] for i in indexes],
            [self.event_ids[i] for i in indexes],
            [counts[i] for i in indexes] if counts is not None else None,
        )

    def split(self, parts: int) -> list[Batch]:
        """Partition by envelope key (event id when there is none): per-key order holds."""
        buckets: list[list[int]] = [[] for _ in range(parts)]
        for index, (_, flat) in enumerate(self.entries):
            if is_envelope_layout(flat):
                key = flat[13] or flat[1]
            else:
                fields = field_map(flat)
                key = fields.get(b"key") or self.event_ids[index]
            buckets[zlib.crc32(key) % parts].append(index)
        return [self.subset(indexes) if indexes else EMPTY for indexes in buckets]


EMPTY = Batch(None, [], [], [], [])
