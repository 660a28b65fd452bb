"""The benchmarks run, at a small size, and their figures obey the invariants.

Each benchmark is run exactly as a user runs it (a subprocess, its own private
stack, ``--json`` on stdout), so these tests also prove that the commands in
docs/benchmarks.md work. No timing is asserted anywhere: speed belongs to the
benchmark output, not to a test that would flake on a busy machine. What is
asserted are the counts, which must hold on any machine:

* transactional oversell run, on SQLite and on the run's own private PostgreSQL:
  exactly ``stock`` buyers succeed, the rest get 409, nothing errors, the store
  ends at 0 with ``stock`` orders, and exactly ``stock`` order.created.v1 events
  reach orders-stream (the outbox delivered);
* naive control, on both: only that its figures are consistent with each other
  (whether a given small run oversells depends on scheduling);
* throughput: every contestant (FastStream's batch mode included) received every
  event, its consumer group delivered all of them and holds none unacked, and the
  JSON has every documented key;
* locustfile: a short headless run against a private stack has no failures;
* store_commits: in every mode (group commit on/off, with and without the writer
  lock) every write committed exactly once (the store's counters, the orders and
  outbox rows in the file), none failed, and with group commit off every write
  had a commit of its own;
* ``--store mongodb`` without ``ORDERFLOW_MONGO_URL`` fails with a message naming it.

The whole pipeline's benchmarks (latency, load, overload, fan-out) are in
test_pipeline_benchmarks_smoke.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.stack import RELAY_ONLY, Stack
from orderflow.models.store.localpostgres import PostgresNotFound, find_postgres_bindir
from tests.bench.runner import BENCH, ROOT, run_benchmark

OVERSELL_KEYS = {
    "mode",
    "buyers",
    "stock",
    "succeeded",
    "rejected",
    "errors",
    "final_stock",
    "orders_in_store",
    "created_events",
    "oversold",
    "elapsed_s",
    "throughput_rps",
}
THROUGHPUT_CONTESTANTS = (
    "raw",
    "raw_dedupe",
    "runtime",
    "faststream",
    "faststream_batch",
    "walrus",
)
THROUGHPUT_KEYS = {
    "events",
    "raw_eps",
    "runtime_eps",
    "faststream_eps",
    "faststream_batch_eps",
    "walrus_eps",
    "raw_dedupe_eps",
    "runtime_vs_raw",
    "runtime_vs_faststream",
    "runtime_vs_faststream_batch",
    "runtime_vs_raw_dedupe",
    "latency_p50_ms",
    "latency_p99_ms",
    "server_cpu_seconds",
    "median_eps",
    "consumed",
    "rounds",
}


def needs_postgres_binaries() -> None:
    """As the PostgreSQL fixtures of tests/conftest.py: fail in CI, skip elsewhere."""
    try:
        find_postgres_bindir()
    except PostgresNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


# Each oversell case on SQLite and on a private PostgreSQL that the run starts itself.
STORES = [
    pytest.param((), id="sqlite"),
    pytest.param(("--store", "postgres"), id="postgres", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize(
    "script",
    [
        "oversell.py",
        "latency.py",
        "naive_api.py",
        "throughput.py",
        "cluster_faults.py",
        "scaling.py",
        "agent_lists.py",
        "load.py",
        "overload.py",
        "fanout.py",
        "store_commits.py",
        "hop_floor.py",
        "idle.py",
    ],
)
def test_help_describes_the_command(script: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage:" in completed.stdout
    assert "--" in completed.stdout
    if script == "oversell.py":  # each store, and what postgres starts
        assert "--store {sqlite,postgres,mongodb}" in completed.stdout
        assert "private PostgreSQL" in " ".join(completed.stdout.split())


def test_mongodb_store_without_url_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    completed = subprocess.run(
        [sys.executable, str(BENCH / "oversell.py"), "--store", "mongodb", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert completed.returncode == 1
    assert "ORDERFLOW_MONGO_URL" in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize("store", STORES)
def test_transactional_orders_never_oversell(store: tuple[str, ...]) -> None:
    buyers, stock = (60, 5) if not store else (50, 3)
    if store:
        needs_postgres_binaries()
    result = run_benchmark("oversell.py", "--buyers", str(buyers), "--stock", str(stock), *store)
    assert set(result) == OVERSELL_KEYS
    assert result["mode"] == "transactional"
    assert (result["buyers"], result["stock"]) == (buyers, stock)
    assert result["succeeded"] == stock
    assert result["rejected"] == buyers - stock
    assert result["errors"] == 0
    assert result["final_stock"] == 0
    assert result["orders_in_store"] == stock
    assert result["created_events"] == stock
    assert result["oversold"] == 0


@pytest.mark.parametrize("store", STORES)
def test_naive_control_reports_consistent_figures(store: tuple[str, ...]) -> None:
    if store:
        needs_postgres_binaries()
    result = run_benchmark("oversell.py", "--buyers", "60", "--stock", "5", "--naive", *store)
    assert set(result) == OVERSELL_KEYS
    assert result["mode"] == "naive"
    assert (result["buyers"], result["stock"]) == (60, 5)
    assert result["succeeded"] + result["rejected"] + result["errors"] == 60
    # Every 201 wrote one order row and then published one event before answering; a
    # request that failed half-way may have written the row, or the row and the event.
    assert result["succeeded"] <= result["created_events"] <= result["orders_in_store"]
    assert result["orders_in_store"] <= result["succeeded"] + result["errors"]
    assert 0 <= result["final_stock"] <= 5
    expected = max(0, result["succeeded"] - 5, result["orders_in_store"] - 5)
    assert result["oversold"] == expected


def test_throughput_contestants_consume_every_event() -> None:
    events = 1000
    result = run_benchmark(
        "throughput.py", "--events", str(events), "--repeat", "2", "--latency-events", "20"
    )
    assert set(result) >= THROUGHPUT_KEYS
    assert (result["events"], result["rounds"]) == (events, 2)
    # Each run: the contestant's own count, and its group's (XINFO GROUPS) delivered
    # entries and unacked remainder. FastStream's batch mode must ack its batches too.
    exactly_once = {"received": events, "delivered": events, "pending": 0}
    assert set(result["consumed"]) == set(THROUGHPUT_CONTESTANTS)
    for label in THROUGHPUT_CONTESTANTS:
        assert result["consumed"][label] == [exactly_once, exactly_once], label
        assert isinstance(result[f"{label}_eps"], float), label  # a rate, never checked
    for key in ("runtime_vs_raw", "runtime_vs_faststream", "runtime_vs_faststream_batch"):
        assert isinstance(result[key], float), key


async def test_locustfile_runs_headless_without_failures() -> None:
    locust = Path(sys.executable).with_name("locust")
    if not locust.exists():
        pytest.skip("locust is not installed in this environment (dev extra)")
    async with Stack(http_workers=1, services=RELAY_ONLY) as stack:
        completed = await asyncio.to_thread(
            subprocess.run,
            [
                str(locust),
                "-f",
                str(BENCH / "locustfile.py"),
                "--headless",
                "-u",
                "5",
                "-r",
                "5",
                "-t",
                "4s",
                "--host",
                stack.base_url,
                "--only-summary",
                "--skip-log",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-4000:]
    stats = json.loads(completed.stdout)
    by_name = {entry["name"]: entry for entry in stats}
    assert by_name["GET /api/v1/menu"]["num_requests"] > 0
    assert sum(entry["num_failures"] for entry in stats) == 0


def test_cluster_faults_count_every_event_and_none_twice() -> None:
    """The three runs at a small size, each on a cluster the script starts itself."""
    events = 600
    result = run_benchmark("cluster_faults.py", "--events", str(events), timeout=240)
    assert set(result["faults"]) == {"kill-master", "kill+WAIT 1", "migrate-slot"}
    assert len(result["load_average"]) == 3
    for fault, counts in result["faults"].items():
        assert counts["sent"] == counts["acknowledged"] == events, fault
        accounted = counts["handled"] + counts["lost"] + counts["survived_unhandled"]
        assert accounted == events, fault
        assert (counts["handled_twice"], counts["dead_letters"]) == (0, 0), fault
    # Every send waited for the replica, which the failover promoted: none is lost.
    assert result["faults"]["kill+WAIT 1"]["lost"] == 0
    migrated = result["faults"]["migrate-slot"]
    assert (migrated["lost"], migrated["handled"], migrated["group_moved"]) == (0, events, True)
    assert result["handled_twice"] == 0


def test_scaling_consumes_every_event_in_every_layout() -> None:
    """Tiny: 300 no-op events and 40 orders, 1 and 2 workers, on one node and a cluster."""
    args = ("--events", "300", "--orders", "40", "--workers", "1,2")
    result = run_benchmark("scaling.py", *args, timeout=280)
    noop = ("one node, 1 stream", "one node, 6 partitions")
    layouts = [
        *(("noop", layout) for layout in noop),
        ("orders", "one node"),
        ("noop", "cluster, 6 partitions"),
        ("orders", "cluster, 6 partitions"),
    ]
    expected = [(*layout, workers) for layout in layouts for workers in (1, 2)]
    assert [(r["pipeline"], r["layout"], r["workers"]) for r in result["rows"]] == expected
    for row in result["rows"]:
        # XINFO GROUPS at the end: the group delivered every entry once, none unacked.
        events = 300 if row["pipeline"] == "noop" else 40
        assert (row["events"], row["delivered"], row["pending"]) == (events, events, 0)
        partitioned = "6 partitions" in row["layout"]
        assert row["streams"] == (6 if partitioned else 1)
        assert isinstance(row["events_per_s"], int) and isinstance(row["load_average_1m"], float)


def test_agent_lists_drains_every_report_on_both_sides() -> None:
    """Tiny: 30 orders, one round: 8 figures alternating list sizes 1 and 100."""
    result = run_benchmark("agent_lists.py", "--orders", "30", "--rounds", "1", timeout=280)
    sides = [r["list_max_events"] for r in result["rows"]]
    assert sides == [1, 100, 1, 100, 100, 1, 100, 1]
    for row in result["rows"]:
        # XINFO GROUPS at the end: every report delivered once, none unacked.
        assert (row["events"], row["delivered"], row["pending"]) == (30, 30, 0)
    assert set(result["median_reports_per_s"]) == {"1", "100"}
    assert isinstance(result["speedup"], float)


def test_hop_floor_carries_every_message_through_every_chain() -> None:
    """Tiny: 2 hops, 10 measured messages per chain, each through every hop of its chain."""
    result = run_benchmark("hop_floor.py", "--hops", "2", "--messages", "10", "--warmup", "2")
    assert result["hops"] == 2
    assert set(result["chains"]) == {"raw", "runtime", "runtime-1proc"}
    for row in result["chains"].values():
        assert row["received"] == 10
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_store_commits_count_every_write_once_in_every_mode() -> None:
    """Tiny: 2 processes x 3 writers, 1 s per mode, the four modes interleaved."""
    result = run_benchmark("store_commits.py", "--writers", "3", "--seconds", "1", "--rounds", "1")
    assert set(result) >= {"settings", "load_average", "modes", "speedup", "lock_speedup"}
    assert set(result["modes"]) == {"on", "off", "on_nolock", "off_nolock"}
    for mode, figures in result["modes"].items():
        assert figures["errors"] == 0, mode
        assert figures["orders"] > 0, mode
        # Six writes per order, each committed once; nothing lost, doubled or pending.
        assert figures["writes"] == figures["jobs_committed"] == 6 * figures["orders"], mode
        assert figures["orders_in_store"] == figures["orders"], mode
        assert figures["outbox_rows"] == 4 * figures["orders"], mode
        assert figures["outbox_pending"] == 0, mode
        assert 1 <= figures["largest_group"] <= 64, mode
    for mode in ("off", "off_nolock"):
        off = result["modes"][mode]
        assert off["commits"] == off["writes"] and off["largest_group"] == 1, mode
    for mode in ("on", "on_nolock"):
        on = result["modes"][mode]
        assert on["commits"] <= on["writes"], mode
    assert result["modes"]["on_nolock"]["lock_waits"] == 0  # no lock, no wait for it
