"""``benchmarks/stall_probe`` records in a process it was put into; ``stall_report`` reads it.

A child interpreter (a real SQLite file, a real uvloop loop: what the API's Sanic
worker runs) is started with the probe on ``PYTHONPATH``. It begins two write
transactions, the second while the first holds the lock, forces a full collection and
runs a uvloop loop; the assertions are counts, never durations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import stall_report
from tests.bench.runner import ROOT

CHILD = """
import asyncio, gc, sqlite3, sys, threading, time
import uvloop

path = sys.argv[1]
holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
holder.execute("CREATE TABLE t (x)")
holder.execute("BEGIN IMMEDIATE")
waiter = sqlite3.connect(path, isolation_level=None, timeout=30)
threading.Timer(0.2, lambda: holder.execute("COMMIT")).start()
waiter.execute("BEGIN IMMEDIATE")  # waits for the holder's COMMIT
waiter.execute("COMMIT")
gc.collect()

async def pause() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)

loop = uvloop.new_event_loop()
loop.run_until_complete(pause())
loop.close()
print("done", flush=True)
time.sleep(30)  # killed by the test once its report is on disk
"""


def child_report(directory: Path, pid: int, within: float = 60.0) -> dict[str, Any]:
    """The child's report once it holds both BEGINs and the loop's pings."""
    path = directory / f"{pid}.json"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            report = json.loads(path.read_text())
            series = report["series"]
            if series["begin"].get("n") == 2 and series["lag"].get("n"):
                return report
        time.sleep(0.2)
    pytest.fail(f"no complete report in {path}")


def test_probe_counts_lock_waits_collections_and_loop_pings(tmp_path: Path) -> None:
    probe_dir = tmp_path / "stalls"
    probe_dir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "benchmarks" / "stall_probe"),
        "STALL_PROBE_DIR": str(probe_dir),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "store.db")],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        report = child_report(probe_dir, child.pid)
    finally:
        child.kill()
        child.wait()
    series = report["series"]
    assert series["begin"]["n"] == 2  # one BEGIN each, the waiter's included
    assert series["gc2"]["n"] >= 1  # the forced full collection
    assert series["lag"]["n"] >= 1  # the uvloop loop was found and pinged
    assert report["process"] == "MainProcess"
    assert [r["pid"] for r in stall_report.load_reports(probe_dir)] == [child.pid]


def test_report_names_processes_as_the_stack_runs_them() -> None:
    argv = "python -m orderflow.agents.cli worker orderflow.agents.orders:app --admin-port 1"
    assert stall_report.process_name(argv, "MainProcess") == "orders"
    api = "python agents/orderflow/agents/cli.py api --workers 1"
    assert stall_report.process_name(api, "MainProcess") == "api main"
    assert stall_report.process_name(api, "Sanic-Server-0-0") == "api worker"
    assert stall_report.process_name("benchmarks/load.py --rates 50", "") == "load.py"
