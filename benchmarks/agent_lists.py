"""The orders worker handling the reports that have arrived one at a time, or together.

Why: the agents that write the store take the events already arrived as a list
(``ORDERFLOW_AGENT_LIST_MAX_EVENTS``, docs/system.md "Handling the events that have
arrived together"): orders concurrently, one order in stream order, one outbox publish
per list. ``ORDERFLOW_AGENT_LIST_MAX_EVENTS=1`` is the one-at-a-time path (a list of one
event, a publish per event), so both run from the same code, side by side, in one run.

Each figure is one ``orderflow worker orderflow.agents.orders:app`` process draining
``--orders`` status reports (one per order, every one a real change: one store
transaction and one publish of ``order.status_updated.v1`` each) appended at once into
``order-status-stream``, SQLite store, a private Valkey; the clock runs from the first
``XADD`` to the last acknowledgement (:func:`benchmarks.scaling_orders.measure_orders`).
The four status steps of every order alternate between the sides (1, N, 1, N, then a
fresh set of orders N, 1, N, 1 per round), so neither side always gets the same status.
This isolates the agent's change from the HTTP front; ``benchmarks/load.py`` measures
the whole pipeline. The load average is printed with every figure.

Usage::

    .venv/bin/python benchmarks/agent_lists.py [--orders 1000] [--rounds 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/agent_lists.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scaling_measure import progress
from benchmarks.scaling_orders import STEPS, measure_orders, prepare
from orderflow.runtime.localserver import LocalRedisServer

LIST_SIZES = (1, 100)
"""ORDERFLOW_AGENT_LIST_MAX_EVENTS of the two sides: one at a time, and the default."""


def run(orders: int, rounds: int, logs: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with LocalRedisServer() as server:
        assert server.process is not None
        pids = [server.process.pid]
        for round_ in range(rounds * 2):
            store_url = f"sqlite:///{logs / f'store-{round_}.db'}"
            order_ids = prepare(store_url, orders)
            first = LIST_SIZES[round_ % 2]
            for step in range(len(STEPS)):
                size = first if step % 2 == 0 else LIST_SIZES[1 - LIST_SIZES.index(first)]
                progress(f"list max {size}: {orders} reports -> {STEPS[step]}")
                row = measure_orders(
                    server.url, pids, "node, 1 stream", 1, step, order_ids, store_url, logs, 1,
                    extra_env={"ORDERFLOW_AGENT_LIST_MAX_EVENTS": str(size)},
                )  # fmt: skip
                row["list_max_events"] = size
                row["status"] = STEPS[step]
                rows.append(row)
                progress(f"  {row['events_per_s']} reports/s (load {row['load_average_1m']})")
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median reports/s per side, and their ratio."""
    medians = {
        size: statistics.median(r["events_per_s"] for r in rows if r["list_max_events"] == size)
        for size in LIST_SIZES
    }
    return {
        "median_reports_per_s": {str(size): medians[size] for size in LIST_SIZES},
        "speedup": round(medians[LIST_SIZES[1]] / medians[LIST_SIZES[0]], 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'list max':>9}{'status':>18}{'reports/s':>11}{'elapsed s':>11}"
             f"{'worker cpu s':>13}{'load 1m':>9}"]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r['list_max_events']:>9}{r['status']:>18}{r['events_per_s']:>11}"
            f"{r['elapsed_s']:>11}{r['worker_cpu_s']:>13}{r['load_average_1m']:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="reports per figure")
    parser.add_argument(
        "--rounds", type=int, default=1, help="pairs of order sets (8 figures each)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.rounds < 1:
        parser.error("--orders and --rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="orderflow-agent-lists-") as logs:
        rows = run(args.orders, args.rounds, Path(logs))
    result = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
              "rows": rows, **summary(rows)}  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(table(rows))
        print(f"median reports/s {result['median_reports_per_s']}, speedup {result['speedup']}x; "
              f"{result['cpus']} CPUs, load average after: {result['load_average']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
