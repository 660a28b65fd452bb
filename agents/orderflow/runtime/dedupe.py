"""Idempotent consumption: remember which event ids a group has processed.

Marks are members of time-bucketed sets ``orderflow:{<stream>}:seen:<group>:<bucket>``
(bucket = ``floor(unix_time / ttl)``). A batch of marks is one ``SADD`` (+
``EXPIREAT``), written in the same pipeline as the batch's ``XACK``; a batch is
checked with one ``SMISMEMBER`` on the current and one on the previous bucket. So an event
id is remembered for at least ``ttl`` and at most ``2 * ttl`` seconds after
it was processed (default ttl 24 h): long enough to absorb redeliveries and
outbox re-publishes (which happen within seconds to minutes), bounded so the
memory cost is ~60 bytes per event per day instead of growing forever.
One set per bucket instead of one key per event keeps the per-event Redis
work to one set member (the throughput target forbids per-event commands).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from orderflow.runtime import keys
from orderflow.runtime.wire import bulks, pack, pack_parts


class DedupeMarks:
    def __init__(self, group: str, stream: str, ttl: int) -> None:
        self.group = group
        self.stream = stream
        self.ttl = max(1, int(ttl))

    def _bucket(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // self.ttl)

    def key(self, bucket: int) -> str:
        return keys.seen_key(self.stream, self.group, bucket)

    def expire_at(self, bucket: int) -> int:
        return (bucket + 2) * self.ttl + 60

    def current(self, now: float | None = None) -> tuple[int, str, str]:
        """(bucket, its key, the previous bucket's key)."""
        bucket = self._bucket(now)
        return bucket, self.key(bucket), self.key(bucket - 1)

    def check_keys(self, now: float | None = None) -> tuple[str, str]:
        _, current, previous = self.current(now)
        return current, previous

    def add_check(
        self, pipe: Any, event_ids: Sequence[bytes | str], now: float | None = None
    ) -> None:
        """Queue the two SMISMEMBERs; :meth:`seen` turns their replies into a set of ids."""
        current, previous = self.check_keys(now)
        pipe.execute_command("SMISMEMBER", current, *event_ids)
        pipe.execute_command("SMISMEMBER", previous, *event_ids)

    @staticmethod
    def seen(event_ids: Sequence[bytes], current: list[Any], previous: list[Any]) -> set[bytes]:
        return {eid for eid, a, b in zip(event_ids, current, previous, strict=True) if a or b}

    def add_marks(
        self, pipe: Any, event_ids: Sequence[bytes | str], now: float | None = None
    ) -> None:
        """Queue one SADD for the batch and the bucket's expiry (bucket end + ttl)."""
        if not event_ids:
            return
        bucket = self._bucket(now)
        key = self.key(bucket)
        pipe.execute_command("SADD", key, *event_ids)
        pipe.execute_command("EXPIREAT", key, self.expire_at(bucket))

    # Raw RESP forms for the consumer's private connection (see orderflow.runtime.wire):
    # redis-py's generic packing of a 100-id command costs more than the server's work.
    def check_command(self, event_ids: Sequence[bytes], now: float | None = None) -> bytes:
        """The two ``SMISMEMBER`` of :meth:`add_check`, encoded: two replies to read."""
        current, previous = self.check_keys(now)
        encoded = bulks(event_ids)
        count = b"*%d\r\n" % (2 + len(event_ids))
        return b"".join(
            [count, bulks([b"SMISMEMBER", current.encode()]), encoded,
             count, bulks([b"SMISMEMBER", previous.encode()]), encoded]
        )  # fmt: skip

    def marks_command(self, event_ids: Sequence[bytes], now: float | None = None) -> bytes:
        """The ``SADD`` + ``EXPIREAT`` of :meth:`add_marks`, encoded: two replies to read."""
        bucket = self._bucket(now)
        key = self.key(bucket).encode()
        return pack_parts(2 + len(event_ids), [bulks([b"SADD", key]), bulks(event_ids)]) + pack(
            [b"EXPIREAT", key, b"%d" % self.expire_at(bucket)]
        )
