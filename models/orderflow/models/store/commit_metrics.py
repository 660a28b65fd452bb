"""The commit metrics every store with group commit observes (SQLite, PostgreSQL).

In a module of their own because a Prometheus metric can be registered once per
process, and two adapters observe the same two histograms, told apart by the
``store`` label: neither adapter should import the other to reach them.
"""

from __future__ import annotations

from prometheus_client import Histogram

COMMIT_SECONDS = Histogram(
    "orderflow_store_commit_seconds",
    "Time one store transaction held its locks, BEGIN returned to COMMIT returned"
    " (a whole group commit; PostgreSQL: place_order's transactions).",
    ["store"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GROUP_SIZE = Histogram(
    "orderflow_store_group_size",
    "Write jobs committed by one COMMIT (1 when group commit is off or the queue was empty).",
    ["store"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
