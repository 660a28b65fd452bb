"""Which first deliveries still need the Redis dedupe check.

The consumer checks every batch it reads against the group's dedupe marks
(:mod:`orderflow.runtime.dedupe`) before the agent sees it. At low load each read is
one event, so that check is a second round trip, and a second wake-up of the consumer,
for every event. For most first deliveries (``XREADGROUP ... >``) it cannot find
anything:

* An entry appended by publish-once (:mod:`orderflow.runtime.publish`: the outbox,
  ``send(..., once=True)``) ends with the field ``once``. The script that appended it
  set the stream's marker for its event id in the same atomic step, so no other entry
  of that stream was appended with that event id by publish-once while the marker lives
  (the dedupe ttl from that publish). A copy appended any other way (a plain
  ``XADD``, a dead-letter replay, a delayed send, another tool) carries no ``once`` and
  is checked.
* A first delivery has not been delivered to this group before, unless the group was
  moved back: re-created after ``NOGROUP``, ``XGROUP SETID``, or a failover to a replica
  that had not received the group's last reads.

So an entry skips the check when it carries ``once`` and is newer than the *watermark*:
the stream's last entry id when this consumer last (re)joined the group (at start,
after ``NOGROUP``, after a lost connection). Entries up to the watermark (a backlog, or
whatever a move back re-delivers to a consumer that saw the group vanish or the
connection drop) are checked. A move back that the consumer did not see happen (another
process re-created the group, ``XGROUP SETID``) shows in the ids: ``>`` reads return
ever-increasing entry ids, so an entry not newer than the last one this consumer read
means the group went back; that read is checked whole and the watermark is read again.

So for publish-once copies the dedupe window counts from the first publish (the marker's
ttl), not from the first handling (the marks': at least the same ttl): a publish-once
copy appended more than a ttl after the first, while the first's mark still lives, is
handled again. The other case this does not catch: the group moved back while this
consumer read nothing, and the stream trimmed (``MAXLEN``) past the last entry it read
before that, so nothing the move back re-delivers to it is older than that entry; an
entry another consumer of the group had handled could then be handled again. Recovered
entries (own pending, retries, claims: :mod:`orderflow.runtime.recovery`) are always
checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger("orderflow.consumer")

ONCE_NAME = "once"
ONCE_FIELD = ONCE_NAME.encode()
"""The field publish-once appends last to an entry (value ``1``); reserved."""

EntryId = tuple[int, int]


def parse_entry_id(entry_id: bytes | str) -> EntryId:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``: entry ids compare as pairs."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def is_published_once(flat: Any) -> bool:
    """The entry was appended by publish-once (its last field is ``once``)."""
    return isinstance(flat, list) and len(flat) >= 2 and flat[-2] == ONCE_FIELD


class FreshCheck:
    """The watermark and the last entry read by one consumer (see the module docstring)."""

    def __init__(self, agent: str, stream: str) -> None:
        self.agent = agent
        self.stream = stream
        self.watermark: EntryId | None = None  # None: to be read before the next read
        self.last_read: EntryId = (0, 0)
        self.skipped = 0  # entries handed over without the check (tests read it)

    def invalidate(self) -> None:
        """The group may have moved back (NOGROUP, a lost connection): read it again."""
        self.watermark = None

    async def refresh(self, redis: Redis) -> None:
        """Read the stream's last entry id (one ``XREVRANGE ... COUNT 1``) as the watermark."""
        reply = await redis.execute_command("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
        self.watermark = parse_entry_id(reply[0][0]) if reply else (0, 0)

    def ids_to_check(
        self, entries: list[Any], event_id_of: Callable[[Any], bytes | None]
    ) -> list[bytes]:
        """Event ids of the entries of one ``>`` read that need the Redis check, in order.

        ``event_id_of(flat)`` finds an entry's event id (``None``: it has none)."""
        first = parse_entry_id(entries[0][0])
        moved_back = first <= self.last_read
        if moved_back:
            log.warning("agent %s: group on %s went back (read %s after %s): checking "
                        "this read whole and reading the watermark again", self.agent,
                        self.stream, entries[0][0], self.last_read)  # fmt: skip
        # `>` reads only go up, unless the group went back: then they go up from here,
        # and are not reported again while they catch up with where they were.
        self.last_read = parse_entry_id(entries[-1][0])
        watermark = self.watermark
        if moved_back or watermark is None:
            self.watermark = None
            return [eid for eid in (event_id_of(flat) for _, flat in entries) if eid]
        ids: list[bytes] = []
        above = first > watermark  # ids only grow within a read: the rest are above too
        for entry_id, flat in entries:
            if not above:
                above = parse_entry_id(entry_id) > watermark
            if above and is_published_once(flat):
                self.skipped += 1
                continue
            eid = event_id_of(flat)
            if eid:
                ids.append(eid)
        return ids
