"""Faults on a Redis Cluster, counted: a master SIGKILLed and a partition's slot migrated
while keyed events are produced and consumed.

Why: the runtime promises that on a cluster nothing is handled twice with a side effect
and nothing is lost beyond what asynchronous replication loses in a failover. This
script measures both on a private cluster it starts (3 masters + 3 replicas,
:class:`~orderflow.runtime.localcluster.LocalCluster`), one fresh cluster per fault:

1. kill-master: ``--events`` keyed events over a topic of 6 partitions, 6 producer tasks,
   one agent whose side effect commits with its dedupe mark (``event.atomic()``); when
   half are acknowledged the master owning partition 0 is SIGKILLed, and the cluster's own
   failover promotes its replica (``cluster-node-timeout`` 2000 ms in LocalCluster).
2. migrate-slot: the same run, but partition 0's slot is migrated to another master
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

FAULTS = ("kill-master", "migrate-slot")
ROWS = (
    ("sent", "events sent (distinct)"),
    ("acknowledged", "acknowledged by XADD"),
    ("send_retries", "sends retried (failed, re-sent once=True)"),
    ("handled", "handled (side effect committed)"),
    ("handled_twice", "handled twice with a side effect"),
    ("lost", "lost (acknowledged, then gone)"),
    ("survived_unhandled", "in a stream but never handled"),
    ("dead_letters", "dead letters"),
    ("fault_at_s", "fault injected at (s into the run)"),
    ("fault_done_s", "promotion seen / migration done after (s)"),
    ("writes_resumed_s", "first XADD acknowledged on it after (s)"),
    ("handling_resumed_s", "first effect committed on it after (s)"),
    ("moved_keys", "keys MIGRATE moved"),
    ("group_moved", "consumer group moved with the stream"),
    ("elapsed_s", "run took (s)"),
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_fault(fault: str, events: int, server: str) -> dict[str, Any]:
    progress(f"{fault}: starting a 3-master + 3-replica cluster")
    with LocalCluster(server) as cluster:
        run = FaultRun(cluster, fault=fault, events=events, progress=progress)
        counts = asyncio.run(run.run()).as_dict()
    progress(f"{fault}: lost {counts['lost']}, handled twice {counts['handled_twice']}")
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
    parser.add_argument("--fault", choices=(*FAULTS, "all"), default="all", help="which fault")
    parser.add_argument(
        "--server", default="valkey", choices=("valkey", "redis-server"), help="server binary"
    )
    args = parser.parse_args(argv)
    if args.events < 10:
        parser.error("--events must be at least 10")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # the runtime's warnings: noise
    faults = FAULTS if args.fault == "all" else (args.fault,)
    results = {fault: run_fault(fault, args.events, args.server) for fault in faults}
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
