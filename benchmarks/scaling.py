"""Scaling: events/s of a no-op agent and of the orders pipeline with 1, 2 and 4 worker
processes, on one node and on a 3-master cluster (6 partitions), with the CPU each used.

Why: one stream is served by one Redis core, so past some worker count a single node
stops the curve; a partitioned topic on a cluster spreads its streams over masters.
This measures the layouts in one run, side by side, and divides each rate by the CPU
cores the run kept busy (worker processes + server processes, from ``/proc/<pid>/stat``),
so a machine with few cores still says what an event costs.

No-op figures: ``--events`` entries are appended first (``XADD``, pipelined); then N
``orderflow worker benchmarks.scaling_app:<app>`` processes start, connect, count
themselves in and wait; the clock starts when they are told to go and stops when every
partition's group has every entry delivered and acknowledged (``XINFO GROUPS``: lag 0,
pending 0). Start-up is not measured. Layouts: one node with one stream, one node with
6 partitions, the cluster with 6 partitions. Orders figures: ``--orders`` status
reports through the orders service (:mod:`benchmarks.scaling_orders`), on one node and
on the cluster. The load average is recorded with every figure.

Usage::

    .venv/bin/python benchmarks/scaling.py [--events 20000] [--orders 2000]
        [--workers 1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

if __package__ in (None, ""):  # run as `python benchmarks/scaling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scaling_app import GO_KEY, READY_KEY, Tick, noop, noop6
from benchmarks.scaling_measure import (
    CpuClock,
    client_for,
    drained,
    figure,
    group_counts,
    progress,
    wait_for,
    workers,
)
from benchmarks.scaling_orders import STEPS, measure_orders, prepare
from orderflow.runtime import App
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer

# (layout, worker app attribute, the App whose topic says where events go). The middle
# one separates what partitioning costs or buys on one node from what the cluster does.
NOOP_LAYOUTS: dict[str, list[tuple[str, str, App]]] = {
    "node": [("one node, 1 stream", "noop", noop), ("one node, 6 partitions", "noop6", noop6)],
    "cluster": [("cluster, 6 partitions", "noop6", noop6)],
}
ORDERS_LAYOUT = {"node": "one node", "cluster": "cluster, 6 partitions"}
ORDERS_PARTITIONS = {"node": 1, "cluster": 6}


def prefill(client: redis.Redis, app: App, events: int) -> list[str]:
    """Append ``events`` ticks (600 keys) to the app's topic; returns its streams."""
    [topic] = app.topics.values()
    for start in range(0, events, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(events, start + 1000)):
            envelope = topic.envelope(Tick(n=n), key=f"key-{n % 600}")
            pipe.xadd(topic.stream_for(envelope), envelope.to_fields())  # type: ignore[arg-type]
        pipe.execute()
    return list(topic.streams)


def measure_noop(url: str, server_pids: list[int], layout: tuple[str, str, App], count: int,
                 events: int, log_dir: Path) -> dict[str, Any]:  # fmt: skip
    name, target, app = layout
    argv = [sys.executable, "-m", "orderflow.runtime", "worker", f"benchmarks.scaling_app:{target}"]
    client = client_for(url)
    try:
        client.flushall()
        streams = prefill(client, app, events)
        env = {"ORDERFLOW_REDIS_URL": url}
        with workers(argv, count, env, log_dir, target) as pids:
            wait_for(lambda: int(client.get(READY_KEY) or 0) >= count, f"{count} workers ready")
            clock = CpuClock(pids, server_pids)
            clock.start()
            client.set(GO_KEY, "1")
            wait_for(lambda: drained(client, streams, events), "every event acknowledged")
            clock.stop()
            delivered, pending, _ = group_counts(client, streams)
    finally:
        client.close()
    return figure("noop", name, count, events, len(streams), clock, delivered, pending)


@contextmanager
def server(kind: str, binary: str) -> Iterator[tuple[str, list[int]]]:
    """A single node, or the cluster; its URL and the pids of every server process."""
    if kind == "cluster":
        with LocalCluster(binary) as cluster:
            yield cluster.url, [n.process.pid for n in cluster.nodes if n.process]
    else:
        with LocalRedisServer(binary) as single:
            assert single.process is not None
            yield single.url, [single.process.pid]


def run(args: argparse.Namespace, counts: list[int], logs: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        progress(f"  {row['events_per_s']} events/s, {row['busy_cores']} busy cores")

    for kind in ("node", "cluster"):
        with server(kind, args.server) as (url, server_pids):
            for layout in NOOP_LAYOUTS[kind]:
                for count in counts:
                    progress(f"noop, {layout[0]}: {count} worker(s), {args.events} events")
                    done(measure_noop(url, server_pids, layout, count, args.events, logs))
            if not args.orders:
                continue
            store_url = f"sqlite:///{logs / f'store-{kind}.db'}"
            progress(f"placing {args.orders} orders in {store_url}")
            order_ids = prepare(store_url, args.orders)
            for step, count in enumerate(counts):
                layout_name = ORDERS_LAYOUT[kind]
                progress(f"orders, {layout_name}: {count} worker(s), {args.orders} reports")
                done(measure_orders(url, server_pids, layout_name, count, step, order_ids,
                                    store_url, logs, ORDERS_PARTITIONS[kind]))  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'pipeline':<9}{'layout':<34}{'workers':>8}{'events/s':>10}{'busy cores':>11}"
        f"{'ev/s/core':>10}{'srv cpu/10k':>12}{'load 1m':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['pipeline']:<9}{r['layout']:<34}{r['workers']:>8}{r['events_per_s']:>10}"
            f"{r['busy_cores']:>11}{r['events_per_s_per_busy_core'] or '-':>10}"
            f"{r['server_cpu_s_per_10k']:>12}{r['load_average_1m']:>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per no-op figure")
    parser.add_argument(
        "--orders", type=int, default=2000, help="orders (reports per figure); 0: no orders figures"
    )
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--server", default="valkey", choices=("valkey", "redis-server"), help="server binary"
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes counts like 1,2,4")
    if args.events < 1 or args.orders < 0 or not counts or min(counts) < 1:
        parser.error("--events and every --workers count must be at least 1, --orders >= 0")
    if len(counts) > len(STEPS):
        parser.error(f"at most {len(STEPS)} worker counts (one status step of the orders each)")
    with tempfile.TemporaryDirectory(prefix="orderflow-scaling-") as logs:
        rows = run(args, counts, Path(logs))
    summary = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
               "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(summary))
    else:
        print(table(rows))
        print(f"{summary['cpus']} CPUs; load average after the run: {summary['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
