"""What a consumer owes Redis: finished events to ack and mark, skipped ones to ack.

The agent finishes events in order, so "done" is one index per handed batch
(``Batch.done_upto``); :meth:`AckBuffer.collect` turns the progress of every batch in
the agent's hands into id lists, which the consumer writes with its next round trip
(``SADD`` marks + ``XACK``). Failed events are left out: they stay pending for their
retry. Ids are forgotten only after the write was answered (:meth:`flushed`), so a
lost connection re-sends them.

It also answers "is this event id already ours?" for the duplicate filter: ids in the
agent's hands, finished but not flushed, or flushed lately (the look-ahead dedupe check
of a batch can run before the marks of the previous one reach Redis).
"""

from __future__ import annotations

from orderflow.runtime.batch import Batch


class AckBuffer:
    def __init__(self, recent_limit: int) -> None:
        self.done_entry_ids: list[bytes] = []  # finished: mark + ack
        self.done_event_ids: list[bytes] = []
        self.ack_only: list[bytes] = []  # skipped / duplicate entries: ack only
        self.handed: list[Batch] = []  # batches not fully moved to the lists above
        self._recent: set[bytes] = set()
        self._recent_old: set[bytes] = set()
        self._recent_limit = recent_limit

    def __bool__(self) -> bool:
        return bool(self.done_entry_ids or self.ack_only)

    def hand(self, batch: Batch) -> None:
        self.handed.append(batch)

    def replace(self, batch: Batch, parts: list[Batch]) -> None:
        """The dispatcher split ``batch`` for N bodies: track the parts instead."""
        self.handed = [b for b in self.handed if b is not batch]
        self.handed.extend(part for part in parts if len(part))

    def collect(self) -> None:
        """Move what the agent finished (``done_upto``, minus failures) to the ack lists."""
        if not self.handed:
            return
        keep: list[Batch] = []
        for batch in self.handed:
            start, upto = batch.acked_upto, batch.done_upto
            if upto > start:
                if batch.failed:
                    for index in range(start, upto):
                        if index not in batch.failed:
                            self.done_entry_ids.append(batch.entry_ids[index])
                            self.done_event_ids.append(batch.event_ids[index])
                else:
                    self.done_entry_ids.extend(batch.entry_ids[start:upto])
                    self.done_event_ids.extend(batch.event_ids[start:upto])
                batch.acked_upto = upto
            if upto < len(batch):
                keep.append(batch)
        self.handed = keep

    def flushed(self, done: int, ack_only: int) -> None:
        """The first ``done`` finished and ``ack_only`` skipped ids were written (more
        may have been added meanwhile): forget them, remember the event ids lately."""
        if done:
            recent = self._recent
            recent.update(self.done_event_ids[:done])
            if len(recent) > self._recent_limit:
                self._recent_old = recent
                self._recent = set()
            del self.done_entry_ids[:done]
            del self.done_event_ids[:done]
        if ack_only:
            del self.ack_only[:ack_only]

    def busy_entry_ids(self) -> set[bytes]:
        """Entries in the agent's hands (or queued for its bodies)."""
        busy: set[bytes] = set()
        for batch in self.handed:
            busy.update(batch.pending_entry_ids())
        return busy

    def owned_event_ids(self, retrying: set[bytes] | frozenset[bytes] = frozenset()) -> set[bytes]:
        """Event ids handed and not flushed yet: a second copy of one is a duplicate.

        A failed event stays ours only while its entry waits for a retry (``retrying``):
        once dead-lettered it is not, even if the body has not moved past it yet (with
        ``concurrency`` > 1 or partitions its batch is collected later), so a replay of
        it read meanwhile is handled, not dropped as a duplicate."""
        owned = set(self.done_event_ids)
        for batch in self.handed:
            if not batch.failed:
                owned.update(batch.pending_event_ids())
                continue
            for index in range(batch.acked_upto, len(batch)):
                if index not in batch.failed or batch.entry_ids[index] in retrying:
                    owned.add(batch.event_ids[index])
        return owned

    def forget_recent(self) -> None:
        """Forget the lately flushed ids (the connection was lost: see
        ``Recovery.connection_lost``); duplicates are then caught by the marks in Redis."""
        self._recent = set()
        self._recent_old = set()

    def recently_flushed(self, event_id: bytes) -> bool:
        return event_id in self._recent or event_id in self._recent_old

    @property
    def recent_sets(self) -> tuple[set[bytes], set[bytes]]:
        """The two generations of lately flushed ids, for a per-batch loop to test
        membership without a call per event (the duplicate filter is on the hot path)."""
        return self._recent, self._recent_old
