"""``benchmarks/post_cost.py`` and ``publish_cost.py`` run, small, with a baseline beside them.

Like the other benchmark smoke tests it asserts counts and the shape of the JSON,
never timings. The baseline is this very checkout (its source roots on the stack's
``PYTHONPATH``), so the test needs no second worktree and still runs both stacks.
"""

from __future__ import annotations

from tests.bench.runner import ROOT, run_benchmark


def test_post_cost_measures_both_contestants_in_every_round() -> None:
    result = run_benchmark(
        "post_cost.py", "--baseline", str(ROOT), "--rounds", "2", "--seconds", "1",
        "--connections", "4", timeout=300.0,
    )  # fmt: skip
    assert set(result["contestants"]) == {"baseline", "current"}
    for figures in result["contestants"].values():
        for leg in ("noop", "post"):
            rounds = figures["rounds"][leg]
            assert len(rounds) == 2
            assert all(r["rps"] > 0 and r["api_cpu_ms"] > 0 for r in rounds)
        assert figures["post_vs_noop"] > 0
    assert result["baseline"] == str(ROOT)


def test_publish_cost_measures_every_concurrency_for_both_contestants() -> None:
    result = run_benchmark(
        "publish_cost.py", "--baseline", str(ROOT), "--orders", "16", "--concurrency", "1,4",
        "--rounds", "2",
    )  # fmt: skip
    assert set(result["cpu_ms_per_order"]) == {"baseline", "current"}
    for runs in result["rounds"].values():
        assert len(runs) == 2
        assert all(set(figures) == {"1", "4"} for figures in runs)
        assert all(value > 0 for figures in runs for value in figures.values())
