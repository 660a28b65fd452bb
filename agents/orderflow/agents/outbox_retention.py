"""Outbox retention: delete published outbox rows once they are old enough.

A published row is history -- its event is on the stream and the publish
marker dedupes a late re-publish -- so without pruning the store's outbox
would grow forever. The orders worker's relay timer calls
:meth:`OutboxPruner.maybe_prune` on every tick; the pruner itself decides
whether a minute has passed, so the relay can stay fast (1 s) while pruning
stays cheap. Unpublished rows are never deleted (the store guarantees it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from orderflow.models.store import Store

log = logging.getLogger(__name__)

OUTBOX_PRUNE_EVERY_SECONDS = 60.0

OUTBOX_PRUNED = Counter(
    "orderflow_outbox_pruned",
    "Published outbox rows deleted after the retention period",
)


class OutboxPruner:
    """Prunes the outbox at most once per ``every_seconds`` (the first call always prunes).

    ``clock`` is monotonic time; it is a parameter so that the throttle can be
    checked without waiting a minute.
    """

    def __init__(
        self,
        retention_seconds: float,
        *,
        every_seconds: float = OUTBOX_PRUNE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retention_seconds < 0:
            raise ValueError("retention_seconds cannot be negative")
        self.retention_seconds = retention_seconds
        self.every_seconds = every_seconds
        self._clock = clock
        self._next_at: float | None = None

    async def maybe_prune(self, store: Store) -> int | None:
        """Prune if due: the number of rows deleted, or ``None`` when it was not time yet.

        The next slot is booked before the store is asked, so a failing store is
        tried again a minute later, not on every relay tick.
        """
        now = self._clock()
        if self._next_at is not None and now < self._next_at:
            return None
        self._next_at = now + self.every_seconds
        pruned = await store.prune_outbox(self.retention_seconds)
        if pruned:
            OUTBOX_PRUNED.inc(pruned)
            log.info(
                "outbox: pruned %d row(s) published more than %gs ago",
                pruned,
                self.retention_seconds,
            )
        return pruned
