"""Faults on a Redis Cluster, counted: a master SIGKILLed and a partition's slot migrated
while keyed events are produced and consumed.

Why: the runtime promises that on a cluster nothing is handled twice with a side effect
and nothing is lost beyond what asynchronous replication loses in a failover. This
script measures both on a private cluster it starts (3 masters + 3 replicas,
:class:`~orderflow.runtime.localcluster.LocalCluster`), one fresh cluster per fault:

1. kill-master: ``--events`` keyed events over a topic of 6 partitions, 6 producer tasks,
   one agent whose side effect commits with its dedupe mark (``event.atomic()``); when
   half are acknowledged the master owning partition 0 is SIGKILLed, and the cluster's own
   failover promotes its replica (``cluster-node-timeout`` 2000 ms in LocalCluster); then
   the killed node is started again, as a supervisor would, and rejoins as a replica.
2. kill+WAIT 1: the same kill, but every send also waits for the master's replica
   (``send(..., replicas=1)``: ``XADD`` + ``WAIT 1 1000``), to see what it buys and costs.
3. migrate-slot: the same run, but partition 0's slot is migrated to another master
   (``CLUSTER SETSLOT ... IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT ... NODE``).

The counting is in :mod:`benchmarks.cluster_fault_run`. Usage::

    .venv/bin/python benchmarks/cluster_faults.py [--events 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/cluster_faults.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cluster_fault_run import FaultRun
from orderflow.runtime.localcluster import LocalCluster

# Column -> (fault, replicas each send waits for): the failover with and without WAIT.
RUNS = {
    "kill-master": ("kill-master", 0),
    "kill+WAIT 1": ("kill-master", 1),
    "migrate-slot": ("migrate-slot", 0),
}
ROWS = (
    ("sent", "events sent (distinct)"),
    ("acknowledged", "acknowledged by XADD"),
    ("send_retries", "sends retried (failed, re-sent once=True)"),
    ("handled", "handled (side effect committed)"),
    ("handled_twice", "handled twice with a side effect"),
    ("lost", "lost (acknowledged, then gone)"),
    ("survived_unhandled", "in a stream but never handled"),
    ("dead_letters", "dead letters"),
    ("produce_s", "all acknowledged after (s)"),
    ("fault_at_s", "fault injected at (s into the run)"),
    ("fault_done_s", "promotion seen / migration done after (s)"),
    ("rejoined_s", "killed node back as a replica after (s)"),
    ("writes_resumed_s", "first XADD acknowledged on it after (s)"),
    ("handling_resumed_s", "first effect committed on it after (s)"),
    ("moved_keys", "keys MIGRATE moved"),
    ("group_moved", "consumer group moved with the stream"),
    ("elapsed_s", "run took (s)"),
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_fault(label: str, events: int, server: str) -> dict[str, Any]:
    fault, replicas = RUNS[label]
    progress(f"{label}: starting a 3-master + 3-replica cluster")
    with LocalCluster(server) as cluster:
        run = FaultRun(cluster, fault=fault, events=events, replicas=replicas, progress=progress)
        counts = asyncio.run(run.run()).as_dict()
    progress(f"{label}: lost {counts['lost']}, handled twice {counts['handled_twice']}")
    return counts


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(results: dict[str, dict[str, Any]]) -> str:
    width = max(len(label) for _, label in ROWS)
    lines = [f"{'':<{width}}  " + "  ".join(f"{fault:>12}" for fault in results)]
    for key, label in ROWS:
        lines.append(
            f"{label:<{width}}  " + "  ".join(f"{cell(r[key]):>12}" for r in results.values())
        )
    parts = {fault: ",".join(r["affected_partitions"]) for fault, r in results.items()}
    lines.append("partitions hit: " + "; ".join(f"{f}: {p}" for f, p in parts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per fault run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--fault", choices=(*RUNS, "all"), default="all", help="one run (default: all three)"
    )
    parser.add_argument(
        "--server", default="valkey", choices=("valkey", "redis-server"), help="server binary"
    )
    args = parser.parse_args(argv)
    if args.events < 10:
        parser.error("--events must be at least 10")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # the runtime's warnings: noise
    labels = tuple(RUNS) if args.fault == "all" else (args.fault,)
    results = {label: run_fault(label, args.events, args.server) for label in labels}
    load = os.getloadavg()
    summary = {
        "events": args.events,
        "load_average": [round(x, 2) for x in load],
        "faults": results,
        "handled_twice": sum(r["handled_twice"] for r in results.values()),
        "lost": sum(r["lost"] for r in results.values()),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(table(results))
        print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    progress(f"summary: {summary['lost']} lost, {summary['handled_twice']} handled twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
