"""Rate-limited logging of entries an agent skips because its topic does not accept them.

A topic declared with ``value_type=`` takes only those event types; other entries on
the stream are acked without running the handler (and counted in
``orderflow_events_skipped{reason="not_accepted"}``). That is usually intended (several
services share a stream), but a typo in a type name or a producer on a newer version
looks the same, so it is logged: once per event type per ``interval`` seconds, with the
number skipped since the last line, so a busy shared stream cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

log = logging.getLogger("orderflow.consumer")


class SkipLog:
    def __init__(self, agent: str, stream: str, interval: float = 60.0) -> None:
        self.agent = agent
        self.stream = stream
        self.interval = interval
        self._last: dict[bytes, float] = {}  # event type -> when it was last logged
        self._since: dict[bytes, int] = {}  # event type -> skipped since then

    def not_accepted(self, skipped: Iterable[tuple[bytes, bytes]]) -> None:
        now = time.monotonic()
        for _, event_type in skipped:
            count = self._since.get(event_type, 0) + 1
            last = self._last.get(event_type)
            if last is not None and now - last < self.interval:
                self._since[event_type] = count
                continue
            self._last[event_type] = now
            self._since[event_type] = 0
            log.info(
                "agent %s: skipped %d %s entr%s on %s (not a type its topic accepts)",
                self.agent, count, event_type.decode(errors="replace")[:200],
                "y" if count == 1 else "ies", self.stream,
            )  # fmt: skip
