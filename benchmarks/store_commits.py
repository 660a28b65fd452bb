"""SQLite group commit and the writer lock on and off, side by side: writes/s, commits/s,
group size, latency, lock waits.

Why this exists: each ``COMMIT`` with ``synchronous=FULL`` is an fsync, and the
pipeline's writes (15-20 per order) went through the file's one write lock one
fsync each. Group commit (:mod:`orderflow.models.store.sqlite_group`) commits the
writes already queued together; this measures what that buys on the store alone.

The write mix is the pipeline's: per order, ``place_order`` and then two status
updates (``confirmed``, ``preparing``), each followed by ``mark_published`` of
the outbox rows it wrote -- six write transactions per order, the services'
real event factories. ``--writers`` asyncio tasks per process do that in a loop
for ``--seconds``; ``--processes 2`` (default) runs two OS processes on the same
file, as the API and a worker do. The modes: ``on``/``off`` is group commit on or
off, with the cross-process writer lock (``flock`` on ``<db>-writer.lock``,
:mod:`orderflow.models.store.sqlite_writer_lock`); ``on_nolock``/``off_nolock``
the same without it (SQLite's sleeping busy handler between the processes,
``?writer_lock=off``). ``--modes`` picks some. Modes are interleaved (on, off, on, off...;
``--rounds``), each round on a fresh file, every process of a round starting at
the same instant; figures are the median over rounds (latency percentiles over
every write of every round).

    .venv/bin/python benchmarks/store_commits.py
    .venv/bin/python benchmarks/store_commits.py --writers 16 --seconds 5 --rounds 3 --json

``--json`` keys: ``settings``; ``modes`` (``on``/``off``, each with ``writes``,
``writes_per_s``, ``commits``, ``commits_per_s``, ``mean_group``, ``largest_group``,
``p50_ms``, ``p99_ms``, ``errors``, ``busy_retries``, ``lock_waits``, ``orders``,
``orders_in_store``, ``outbox_rows``, ``rounds``); ``speedup`` (writes/s on over
off) and ``lock_speedup`` (on over on_nolock), each ``null`` when a mode is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/store_commits.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stack import percentile
from orderflow.agents.messages import order_created_messages, order_status_messages
from orderflow.models.documents import MenuItem, Order, OrderLineRequest, utc_now
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import OutboxMessage, StatusTransition
from orderflow.models.store.sqlite import SqliteStore
from orderflow.runtime.envelope import Envelope

MODES = ("on", "off", "on_nolock", "off_nolock")
"""Group commit on/off, with the writer lock; ``_nolock``: without it."""
STATUSES = ("confirmed", "preparing")
WRITES_PER_ORDER = 2 + 2 * len(STATUSES)
STOCK = 1_000_000_000


# --------------------------------------------------------------- one process


def order_created(order: Order) -> list[OutboxMessage]:
    return order_created_messages(order, correlation_id=order.id)


def status_events(cause: Envelope) -> Callable[[StatusTransition], list[OutboxMessage]]:
    """The orders service's status events, caused by the order's creation."""

    def events(change: StatusTransition) -> list[OutboxMessage]:
        return order_status_messages(change, cause)

    return events


async def writer(store: SqliteStore, index: int, until: float, out: dict[str, Any]) -> None:
    """Orders through the write mix until ``until``; every write's latency into ``out``."""
    item = DEMO_MENU[index % len(DEMO_MENU)].id
    lines = [OrderLineRequest(item_id=item, quantity=1)]

    async def timed(write: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await write
        except Exception:
            out["errors"] += 1
            raise
        out["latencies_ms"].append((time.perf_counter() - started) * 1000)
        return result

    while time.monotonic() < until:
        try:
            placed = await timed(
                store.place_order(
                    lines, idempotency_key=None, request_hash=None, events=order_created
                )
            )
            await timed(store.mark_published([message.id for message in placed.outbox]))
            events = status_events(placed.outbox[0].envelope)
            for status in STATUSES:
                change = await timed(
                    store.update_order_status(placed.order.id, status, utc_now(), events)
                )
                await timed(store.mark_published([message.id for message in change.outbox]))
        except Exception:
            continue  # counted in timed(); the next order
        out["orders"] += 1


async def child(args: argparse.Namespace) -> dict[str, Any]:
    """One process of one round: open the file, wait for the common start, write."""
    store = await SqliteStore.open(
        args.db,
        group_commit=args.mode.startswith("on"),
        writer_lock=not args.mode.endswith("_nolock"),
    )
    try:
        out: dict[str, Any] = {"orders": 0, "errors": 0, "latencies_ms": []}
        commits, jobs = store.commits, store.jobs_committed
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        until = time.monotonic() + args.seconds
        await asyncio.gather(*(writer(store, i, until, out) for i in range(args.writers)))
        out["commits"] = store.commits - commits
        out["jobs_committed"] = store.jobs_committed - jobs
        out["largest_group"] = store.largest_group
        out["busy_retries"] = store.busy_retries
        out["lock_waits"] = store.lock_waits
        return out
    finally:
        await store.close()


# ------------------------------------------------------------------ the run


async def seed(path: Path) -> None:
    store = await SqliteStore.open(path)
    try:
        await store.seed_menu(
            [MenuItem(**{**item.model_dump(), "stock": STOCK}) for item in DEMO_MENU]
        )
    finally:
        await store.close()


def one_round(mode: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every process of one round on a fresh file; their figures summed."""
    path = folder / f"{mode}-{time.monotonic_ns()}.db"
    asyncio.run(seed(path))
    start_at = time.time() + 1.5 + 0.5 * args.processes  # after every child has imported
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "--db",
                str(path),
                "--mode",
                mode,
                "--writers",
                str(args.writers),
                "--seconds",
                str(args.seconds),
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.processes)
    ]
    outs = []
    for process in children:
        stdout, _ = process.communicate(timeout=args.seconds + 120)
        if process.returncode != 0:
            raise RuntimeError(f"a {mode} writer process exited {process.returncode}")
        outs.append(json.loads(stdout))
    conn = sqlite3.connect(path)
    try:
        orders_in_store = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        outbox_rows = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[
            0
        ]
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm", "-writer.lock"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    latencies = [value for out in outs for value in out["latencies_ms"]]
    return {
        "writes": len(latencies),
        "seconds": args.seconds,
        "commits": sum(out["commits"] for out in outs),
        "jobs_committed": sum(out["jobs_committed"] for out in outs),
        "largest_group": max(out["largest_group"] for out in outs),
        "errors": sum(out["errors"] for out in outs),
        "busy_retries": sum(out["busy_retries"] for out in outs),
        "lock_waits": sum(out["lock_waits"] for out in outs),
        "orders": sum(out["orders"] for out in outs),
        "orders_in_store": orders_in_store,
        "outbox_rows": outbox_rows,
        "outbox_pending": pending,
        "latencies_ms": latencies,
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round's rates, every round's counts, the latency of every write."""
    latencies = [value for r in rounds for value in r["latencies_ms"]]
    writes = sum(r["writes"] for r in rounds)
    commits = sum(r["commits"] for r in rounds)
    return {
        "writes": writes,
        "writes_per_s": round(statistics.median(r["writes"] / r["seconds"] for r in rounds), 1),
        "commits": commits,
        "commits_per_s": round(statistics.median(r["commits"] / r["seconds"] for r in rounds), 1),
        "jobs_committed": sum(r["jobs_committed"] for r in rounds),
        "mean_group": round(sum(r["jobs_committed"] for r in rounds) / max(1, commits), 2),
        "largest_group": max(r["largest_group"] for r in rounds),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "errors": sum(r["errors"] for r in rounds),
        "busy_retries": sum(r["busy_retries"] for r in rounds),
        "lock_waits": sum(r["lock_waits"] for r in rounds),
        "orders": sum(r["orders"] for r in rounds),
        "orders_in_store": sum(r["orders_in_store"] for r in rounds),
        "outbox_rows": sum(r["outbox_rows"] for r in rounds),
        "outbox_pending": sum(r["outbox_pending"] for r in rounds),
        "rounds": len(rounds),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = tuple(mode for mode in MODES if mode in args.modes.split(","))
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in chosen}
    with tempfile.TemporaryDirectory(prefix="store-commits-") as folder:
        for round_no in range(args.rounds):
            for mode in chosen if round_no % 2 == 0 else chosen[::-1]:
                result = one_round(mode, args, Path(folder))
                rounds[mode].append(result)
                print(
                    f"round {round_no + 1}/{args.rounds} mode={mode}: "
                    f"{result['writes'] / args.seconds:.0f} writes/s, "
                    f"{result['commits'] / args.seconds:.0f} commits/s",
                    file=sys.stderr,
                    flush=True,
                )
    modes = {mode: summary(rounds[mode]) for mode in chosen}
    return {
        "settings": {
            key: getattr(args, key) for key in ("writers", "processes", "seconds", "rounds")
        },
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "modes": modes,
        "speedup": ratio(modes, "on", "off"),
        "lock_speedup": ratio(modes, "on", "on_nolock"),
    }


def ratio(modes: dict[str, dict[str, Any]], mode: str, baseline: str) -> float | None:
    """writes/s of ``mode`` over ``baseline``'s; ``None`` when either was not run."""
    if mode not in modes or baseline not in modes or not modes[baseline]["writes_per_s"]:
        return None
    return round(modes[mode]["writes_per_s"] / modes[baseline]["writes_per_s"], 2)


def print_results(result: dict[str, Any]) -> None:
    settings = result["settings"]
    print(
        f"SQLite group commit / writer lock, {settings['processes']} process(es) x "
        f"{settings['writers']} writers, {settings['seconds']} s x {settings['rounds']} "
        f"interleaved rounds "
        f"(load average {' '.join(str(v) for v in result['load_average'])})"
    )
    columns = ("writes_per_s", "commits_per_s", "mean_group", "largest_group", "p50_ms", "p99_ms")
    counts = ("errors", "busy_retries", "lock_waits")
    header = ("mode", *columns, *counts)
    rows = [
        (mode, *(str(figures[key]) for key in (*columns, *counts)))
        for mode, figures in result["modes"].items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"speedup (writes/s on / off): {result['speedup']}")
    print(f"lock speedup (writes/s on / on_nolock): {result['lock_speedup']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "SQLite store writes with group commit and the writer lock on and off, "
            "interleaved in one run: writes/s, commits/s, mean group size, p50/p99 write "
            "latency, busy retries, lock waits. Progress on "
            "stderr, a table (or --json) on stdout."
        )
    )
    parser.add_argument("--writers", type=int, default=16, help="asyncio writers per process (16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round (5)")
    parser.add_argument("--processes", type=int, default=2, help="processes on one file (2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode, interleaved (2)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {','.join(MODES)} (all)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args))))
        return 0
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        print(f"store_commits.py: unknown --modes {','.join(sorted(unknown))} ({','.join(MODES)})")
        return 2
    if args.writers < 1 or args.processes < 1 or args.rounds < 1 or args.seconds <= 0:
        print("store_commits.py: --writers, --processes, --rounds and --seconds must be positive")
        return 2
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
