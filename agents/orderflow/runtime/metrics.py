"""Prometheus metrics of the runtime (default registry; see docs/runtime.md, "Metrics").

Per-event work must stay tiny (the no-op agent has to run near raw Redis
speed), so nothing is observed per event: the consumer adds the processed count
once per flushed batch, and :meth:`AgentMetrics.observe_latencies` folds the
handler latencies of the batch into the histogram in one pass.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter(
    "orderflow_events_processed", "Events the agent finished handling (then acked)", ["agent"]
)
FAILED = Counter("orderflow_events_failed", "Handler exceptions (each delivery counts)", ["agent"])
RETRIED = Counter(
    "orderflow_events_retried", "Failed events scheduled for another delivery", ["agent"]
)
DEAD_LETTERED = Counter(
    "orderflow_events_dead_lettered",
    "Events moved to the dead-letters stream",
    ["agent", "reason"],
)
SKIPPED = Counter(
    "orderflow_events_skipped",
    "Entries acked without running the handler",
    ["agent", "reason"],  # duplicate | not_accepted | trimmed (deleted while pending)
)
HANDLER_SECONDS = Histogram(
    "orderflow_handler_seconds",
    "Time the agent spent on one event (from hand-over to asking for the next)",
    ["agent"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_LAG = Gauge(
    "orderflow_consumer_lag",
    "Entries in the stream not yet delivered to the group (XINFO GROUPS lag)",
    ["agent", "stream", "group"],
)
CONSUMER_PENDING = Gauge(
    "orderflow_consumer_pending",
    "Entries delivered to the group but not acked (XINFO GROUPS pending)",
    ["agent", "stream", "group"],
)
RECONNECTS = Counter("orderflow_reconnects", "Times an agent lost its Redis connection", ["agent"])
DELAYED_MOVED = Counter("orderflow_delayed_moved", "Delayed events moved to their stream")


class AgentMetrics:
    """The metric children of one agent, plus cheap per-batch accumulation."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.processed = PROCESSED.labels(agent)
        self.failed = FAILED.labels(agent)
        self.retried = RETRIED.labels(agent)
        self.duplicate = SKIPPED.labels(agent, "duplicate")
        self.not_accepted = SKIPPED.labels(agent, "not_accepted")
        self.trimmed = SKIPPED.labels(agent, "trimmed")
        self.reconnects = RECONNECTS.labels(agent)
        self.latency = HANDLER_SECONDS.labels(agent)
        self._bounds: list[float] = list(HANDLER_SECONDS._upper_bounds)

    def dead_lettered(self, reason: str) -> None:
        DEAD_LETTERED.labels(self.agent, reason).inc()

    def observe_latencies(self, values: Sequence[float]) -> None:
        """Fold a batch of latencies into the histogram with one update per bucket."""
        if not values:
            return
        child = self.latency
        buckets = getattr(child, "_buckets", None)
        total = getattr(child, "_sum", None)
        if buckets is None or total is None or len(buckets) != len(self._bounds):
            for value in values:  # prometheus_client internals changed: slow but correct
                child.observe(value)
            return
        counts = [0] * len(self._bounds)
        bounds = self._bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
        total.inc(sum(values))

    def set_group_info(self, stream: str, group: str, lag: int | None, pending: int) -> None:
        CONSUMER_PENDING.labels(self.agent, stream, group).set(pending)
        if lag is not None:
            CONSUMER_LAG.labels(self.agent, stream, group).set(lag)
