"""CPU per order of publishing its outbox events, when k orders publish at the same moment.

Why: after its commit every order publishes its two outbox events
(``App.send_envelopes(..., once=True)``), and the round trip, not the commands, is what
costs the publishing process CPU. When several commits finish together (the API with
many clients, a worker with concurrency, group commit) the calls can share one round
trip (:mod:`orderflow.runtime.publish_batch`). This measures the publishing process's
CPU per order (``getrusage``, all threads) for ``--concurrency`` orders published at
once (``asyncio.gather`` of one call per order), against a private Valkey the run
starts.

``--baseline DIR`` runs the same measurement with another checkout's source
(``DIR/agents``, ``DIR/web``, ``DIR/models`` first on ``PYTHONPATH``): each contestant
is a child process of this script, and the rounds alternate the contestants, so a
change and its baseline are compared in one run.

    python benchmarks/publish_cost.py --concurrency 1,4,8 --rounds 2
    python benchmarks/publish_cost.py --baseline /tmp/base --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/publish_cost.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.post_cost import source_path
from benchmarks.procstat import load_average
from benchmarks.stack import StackError, log, run_benchmark


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="publish_cost.py",
        description=(
            "CPU per order of publishing its two outbox events when k orders publish at "
            "once, for this checkout and optionally a baseline checkout, in one run."
        ),
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--orders", type=int, default=400, help="orders per measurement (400)")
    parser.add_argument("--concurrency", default="1,4,8", help="orders at once (1,4,8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the Valkey URL, in a child
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(url: str, orders: int, levels: list[int]) -> dict[str, float]:
    """In a child: ms of CPU per order's publish at each concurrency level."""
    from orderflow.agents.messages import order_created_messages
    from orderflow.agents.outbox import outbox_topic
    from orderflow.models.documents import OrderLineRequest
    from orderflow.models.store import new_order
    from orderflow.runtime import App

    app = App("publish-cost", broker=url, pool_size=200)
    await app.connect()
    item = {"margherita": {"name": "Margherita", "price": 900}}
    line = [OrderLineRequest(item_id="margherita", quantity=1)]

    def publications() -> list[Any]:
        messages = order_created_messages(new_order(line, item), "publish-cost")
        return [(outbox_topic(app, message.stream), message.envelope) for message in messages]

    result: dict[str, float] = {}
    try:
        for level in levels:
            groups = [[publications() for _ in range(level)] for _ in range(orders // level)]
            started = cpu_seconds()
            for group in groups:
                await asyncio.gather(*(app.send_envelopes(p, once=True) for p in group))
            result[str(level)] = 1000 * (cpu_seconds() - started) / (len(groups) * level)
    finally:
        await app.stop()
    return result


def run_child(url: str, args: argparse.Namespace, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, __file__, "--child", url, "--orders", str(args.orders)]
    argv += ["--concurrency", args.concurrency]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"measurement failed:\n{done.stderr[-4000:]}")
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from orderflow.runtime.localserver import LocalRedisServer

    trees: list[tuple[str, str | None]] = [("current", None)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", source_path(args.baseline.resolve())))
    load_at_start = load_average()
    server = LocalRedisServer(data_dir=Path(tempfile.mkdtemp(prefix="orderflow-publish-")))
    await asyncio.to_thread(server.start)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    try:
        for number in range(args.rounds):
            for name, pythonpath in trees if number % 2 == 0 else trees[::-1]:
                figures = await asyncio.to_thread(run_child, server.url, args, pythonpath)
                rounds[name].append(figures)
                log(f"{name}: " + ", ".join(f"{k} at once {v:.3f} ms" for k, v in figures.items()))
    finally:
        await asyncio.to_thread(server.stop)
    medians = {
        name: {level: round(statistics.median(r[level] for r in runs), 4) for level in runs[0]}
        for name, runs in rounds.items()
    }
    return {
        "cpu_ms_per_order": medians,
        "rounds": rounds,
        "orders": args.orders,
        "baseline": None if args.baseline is None else str(args.baseline),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in load_average()],
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    levels = list(next(iter(result["cpu_ms_per_order"].values())))
    print("CPU ms per order's publish (2 events), by orders publishing at once (medians)")
    print(f"{'contestant':<10} " + " ".join(f"{level + ' at once':>12}" for level in levels))
    for name, figures in result["cpu_ms_per_order"].items():
        print(f"{name:<10} " + " ".join(f"{figures[level]:>12.3f}" for level in levels))
    start, end = result["load_average_at_start"], result["load_average_at_end"]
    print(f"load average {start[0]} at start, {end[0]} at end")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        levels = [int(level) for level in args.concurrency.split(",") if level.strip()]
    except ValueError:
        print("--concurrency must be integers separated by commas", file=sys.stderr)
        return 2
    if not levels or min(levels) < 1 or args.orders < max(levels) or args.rounds < 1:
        print("--concurrency >= 1, --orders >= the largest, --rounds >= 1", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.orders, levels))))
        return 0
    return run_benchmark("publish_cost", run(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())
