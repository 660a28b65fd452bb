"""``benchmarks/stage_trace.py``: histograms read from a real Prometheus exposition.

The exposition comes from ``prometheus_client`` itself (a registry of its own, known
observations), so the parser is tested against the format the processes serve; the
quantiles are checked against the bucket arithmetic, not against any timing.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from benchmarks.stage_trace import parse_histograms, stage_rows


def test_only_the_growth_of_orderflow_histograms_becomes_rows() -> None:
    registry = CollectorRegistry()
    stage = Histogram(
        "orderflow_stage_seconds", "a stage", ["step"], buckets=(0.001, 0.002, 0.004),
        registry=registry,
    )  # fmt: skip
    other = Histogram("unrelated_seconds", "not ours", registry=registry)
    other.observe(1.0)
    size = Histogram("orderflow_group_size", "a size", buckets=(1, 2, 4, 8), registry=registry)
    stage.labels("commit").observe(0.0005)
    before = {"worker": parse_histograms(generate_latest(registry).decode())}
    assert set(before["worker"]) == {
        ("orderflow_stage_seconds", 'step="commit"'),
        ("orderflow_group_size", ""),
    }
    for value in (0.0015,) * 4 + (0.003,) * 4:  # 8 more: 4 in (1, 2] ms, 4 in (2, 4] ms
        stage.labels("commit").observe(value)
    for value in (3, 3):
        size.observe(value)
    after = {"worker": parse_histograms(generate_latest(registry).decode())}

    rows = {row["metric"]: row for row in stage_rows(before, after)}
    assert set(rows) == {"orderflow_stage_seconds", "orderflow_group_size"}
    commit = rows["orderflow_stage_seconds"]
    assert (commit["process"], commit["labels"], commit["count"], commit["unit"]) == (
        "worker", 'step="commit"', 8, "ms",
    )  # fmt: skip
    assert math.isclose(commit["mean"], (4 * 1.5 + 4 * 3.0) / 8, abs_tol=1e-6)
    assert math.isclose(commit["p50"], 2.0)  # rank 4 of 8: the top of the (1, 2] bucket
    assert math.isclose(commit["p99"], 2.0 + 2.0 * (7.92 - 4) / 4)  # inside (2, 4]
    group = rows["orderflow_group_size"]
    assert (group["count"], group["unit"], group["mean"]) == (2, "", 3.0)


def test_a_process_that_did_not_answer_has_no_rows() -> None:
    registry = CollectorRegistry()
    stage = Histogram("orderflow_stage_seconds", "a stage", registry=registry)
    stage.observe(0.01)
    after = {"api": parse_histograms(generate_latest(registry).decode()), "orders": {}}
    rows = stage_rows({}, after)
    assert [(row["process"], row["count"]) for row in rows] == [("api", 1)]
