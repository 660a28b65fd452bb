"""The whole pipeline's benchmarks (issue 13) run small, and their counts hold.

Each runs as a user runs it (tests/bench/runner.py); no timing is asserted, only
counts that must hold on any machine:

* latency: every order reached ``delivered`` and the percentiles are ordered (with
  ``--layout all``, in each layout; with ``--marks both``, deferred and at once), and
  the per-stage table counts the publishes and marks of every publishing process;
* load: every order of every step accepted and delivered, every followed order
  delivered, no errors, the JSON keys present (the store's share of each window
  among them) and the knee the documented rule's answer for the steps it printed;
* overload: with admission control off and on, every order sent was accepted or
  shed, every accepted one delivered, and the store holds exactly the accepted ones;
* fanout: every reader received every change (``received_all``), and the counts of
  readers, changes and messages agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orderflow.agents.services import LAYOUTS
from tests.bench.runner import run_benchmark

LATENCY_KEYS = {
    "orders",
    "first_update_p50_ms",
    "first_update_p99_ms",
    "delivered_p50_ms",
    "delivered_p99_ms",
    "snapshot_p50_ms",
    "snapshot_p99_ms",
}


def test_latency_reports_ordered_percentiles() -> None:
    result = run_benchmark("latency.py", "--orders", "5", "--warmup", "1")
    assert set(result) >= LATENCY_KEYS
    assert result["orders"] == 5
    assert result["timeouts"] == 0
    for key in LATENCY_KEYS - {"orders"}:
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
    assert result["first_update_p50_ms"] <= result["first_update_p99_ms"]
    assert result["delivered_p50_ms"] <= result["delivered_p99_ms"]
    # Each order's first update comes before (or is) its delivered update.
    assert result["first_update_p50_ms"] <= result["delivered_p50_ms"]
    assert result["first_update_p99_ms"] <= result["delivered_p99_ms"]
    # Every order's snapshot comes before (or is) its delivered update, so every
    # percentile of the one is at most the other's (no order timed out).
    assert result["snapshot_p50_ms"] <= result["delivered_p50_ms"]
    assert result["snapshot_p99_ms"] <= result["delivered_p99_ms"]
    assert_stages(result["stages"], orders=5)


def stage_counts(stages: list[dict[str, Any]], metric: str) -> dict[str, int]:
    """Per process, the count of ``metric`` (summed over its label sets) in the stages."""
    counts: dict[str, int] = {}
    for row in stages:
        if row["metric"] == metric:
            counts[row["process"]] = counts.get(row["process"], 0) + row["count"]
    return counts


def assert_stages(stages: list[dict[str, Any]], orders: int) -> None:
    """The per-stage table counts every process's publishes, marks and handled events
    (the workers' sums, so that it holds for either layout)."""
    assert stages, "no stage histogram grew"
    publishes = stage_counts(stages, "orderflow_outbox_publish_seconds")
    assert publishes.pop("api") == orders  # each POST publishes its outbox, then answers
    # The workers: confirmed .. delivered (4), the delivery created .. delivered (3).
    assert sum(publishes.values()) >= 7 * orders
    marks = stage_counts(stages, "orderflow_outbox_mark_seconds")
    assert marks.pop("api") >= 1 and sum(marks.values()) >= 1
    handlers = stage_counts(stages, "orderflow_handler_seconds")
    assert sum(handlers.values()) >= 7 * orders  # at least every event that published


def test_latency_measures_every_layout_side_by_side() -> None:
    """``--layout all``: one private stack per layout, every order delivered in each."""
    result = run_benchmark("latency.py", "--orders", "3", "--warmup", "1", "--layout", "all")
    assert (result["layout"], result["compared"]) == ("all", list(LAYOUTS))
    for layout in LAYOUTS:
        assert set(result[layout]) >= LATENCY_KEYS
        assert (result[layout]["orders"], result[layout]["timeouts"]) == (3, 0)
        assert_stages(result[layout]["stages"], orders=3)


def test_latency_compares_deferred_marks_with_marking_at_once() -> None:
    """``--marks both``: the baseline stack marks each publish at once (one mark per
    POST in the API), the deferred one writes them in flushes; every order delivered."""
    result = run_benchmark("latency.py", "--orders", "3", "--warmup", "1", "--marks", "both")
    assert (result["marks"], result["compared"]) == ("both", ["deferred", "at-once"])
    for marks in ("deferred", "at-once"):
        assert (result[marks]["orders"], result[marks]["timeouts"]) == (3, 0)
        assert_stages(result[marks]["stages"], orders=3)
    at_once = stage_counts(result["at-once"]["stages"], "orderflow_outbox_mark_seconds")
    assert at_once["api"] == 3  # one mark transaction per order placed


def test_load_delivers_every_order_and_computes_the_knee(tmp_path: Path) -> None:
    rates = (4.0, 8.0)
    png = tmp_path / "curve.png"
    result = run_benchmark(
        "load.py",
        "--rates", ",".join(f"{r:g}" for r in rates),
        "--seconds", "3", "--warmup", "1", "--noop-seconds", "1", "--track-per-second", "4",
        "--stop-below", "0", "--plot", str(png),
    )  # fmt: skip
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # --plot wrote the curve
    assert set(result) >= {"steps", "knee_orders_per_s", "post_vs_noop"}
    assert [s["offered_per_s"] for s in result["steps"]] == list(rates)
    for rate, s in zip(rates, result["steps"], strict=True):
        sent = int(rate * 4)  # (warm-up + measured seconds) * rate, none skipped
        assert (s["sent"], s["measured_sent"]) == (sent, int(rate * 3))
        assert s["errors"] == {}
        assert s["accepted"] == s["delivered_total"] == sent
        assert s["tracked"] > 0 and s["tracked_delivered"] == s["tracked"]
        assert s["drain_s"] is not None
        assert s["connections_opened"] >= 0 and s["client_cpu_share"] >= 0
        # The store's share of the window: every writing process (the API and the
        # demo layout's writers) committed, and the total is their sum.
        commits = s["store_commit_share"]
        assert {"api", "writers"} <= set(commits) and commits["total"] > 0
        assert s["store_lock_wait_share"]["total"] >= 0
    # The knee by the documented rule, recomputed here from the printed steps.
    expected = [
        s["offered_per_s"]
        for s in result["steps"]
        if s["achieved_per_s"] >= 0.95 * s["offered_per_s"]
        and s["delivered_p99_ms"] is not None
        and s["delivered_p99_ms"] <= 1000
        and not s["errors"]
        and not s["shed"]
    ]
    assert result["knee_orders_per_s"] == (max(expected) if expected else None)
    assert isinstance(result["post_vs_noop"], float) and result["post_vs_noop"] > 0
    assert result["post_vs_noop_errors"] == 0
    assert set(result["post_vs_noop_client_cpu_share"]) == {"noop", "post"}


def test_overload_accounts_for_every_order_with_admission_off_and_on() -> None:
    """Counts only: every order sent was accepted or shed, every accepted one was
    delivered, and the store holds exactly the accepted ones (a shed order ordered
    nothing). The bound of 1 makes the 'on' leg refuse whenever a group is behind."""
    rate = 12.0
    result = run_benchmark(
        "overload.py", "--rates", f"{rate:g}", "--seconds", "3", "--warmup", "1",
        "--bound", "1", "--track-per-second", "3",
    )  # fmt: skip
    off, on = result["legs"]
    assert (off["admission_max_backlog"], on["admission_max_backlog"]) == (0, 1)
    sent = int(rate * 4)
    for leg in (off, on):
        [step] = leg["steps"]
        assert step["sent"] == sent
        assert step["errors"] == {}
        assert step["accepted"] + step["shed"] == sent
        assert step["delivered_total"] == step["accepted"] == leg["orders_in_store"]
        assert step["tracked_delivered"] == step["tracked"]
    assert off["steps"][0]["shed"] == 0


def test_fanout_reaches_every_reader() -> None:
    clients, orders = 40, 4
    result = run_benchmark(
        "fanout.py", "--clients", str(clients), "--orders", str(orders),
        "--client-processes", "2", "--non-readers", "4",
    )  # fmt: skip
    assert set(result) >= {"clients", "received_all", "fanout_p99_ms", "rss_per_client_kb"}
    assert result["clients"] == clients
    assert result["received_all"] is True
    assert result["missing_messages"] == 0
    assert result["non_readers"] == 4
    # Every order goes through the same steps; every reader of it got every change.
    assert result["changes"] > 0 and result["changes"] % orders == 0
    assert result["messages_received"] == clients * (result["changes"] // orders)
    assert isinstance(result["rss_per_client_kb"], float)


def test_idle_reports_every_process_of_the_layout() -> None:
    result = run_benchmark("idle.py", "--seconds", "1", "--warmup", "0", "--layout", "split")
    assert result["layout"] == "split"
    shares = result["cpu_share"]
    processes = {"api", "orders", "delivery", "notifications", "simulator", "valkey"}
    assert set(shares) == processes | {"total"}
    assert all(shares[name] >= 0 for name in processes)
    assert shares["total"] == pytest.approx(sum(shares[name] for name in processes), abs=1e-3)
    assert result["seconds"] >= 1
