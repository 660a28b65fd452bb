"""What one ``POST /api/v1/orders`` costs the API process, against a no-op POST, side by side.

Why: ``post_vs_noop`` (benchmarks/load.py) is a throughput ratio, and on a machine
other people load a throughput is only good within one run. The API's CPU seconds
per answered request are steadier (another process taking the core slows the API
down; it does not make each request cost more CPU), and they say where the order
route stands against the no-op route of the same app, whatever the store waits are.

Each contestant is a private stack (benchmarks/stack.py: Valkey, SQLite, one API
worker, every service worker, the no-op route on, the stock raised so nothing is
refused, admission control off so that no order is refused either). ``--baseline
DIR`` adds a second stack whose processes run another checkout's source
(``DIR/agents``, ``DIR/web``, ``DIR/models`` first on ``PYTHONPATH``; made with
``git worktree add --detach DIR <commit>``), so a change and its baseline are measured
in one run: both stacks are up for the whole run and the legs are interleaved
(``--rounds`` rounds; each round runs, for each contestant in turn, a no-op leg and an
order leg of ``--seconds`` each, closed loop over ``--connections`` keep-alive
connections, then waits until the workers drained the orders so that one stack's
backlog does not run during the other's legs). Per contestant the table gives the
median over the rounds of: requests/s of each leg, ``post_vs_noop``, and the API
process's CPU milliseconds per answered request (``/proc`` utime + stime of the API
and its threads, such as the SQLite writer; 1.0 = one core).

    python benchmarks/post_cost.py --rounds 3 --seconds 5
    git worktree add --detach /tmp/base main
    python benchmarks/post_cost.py --baseline /tmp/base --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/post_cost.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.keepalive import ConnectionPool
from benchmarks.load import NOOP_PATH, STOCK, closed_loop_rate, wait_drained
from benchmarks.procstat import cpu_seconds, load_average
from benchmarks.stack import ALL_SERVICES, Stack, StackError, log, pid_of, run_benchmark

ORDERS_PATH = "/api/v1/orders"
SOURCE_ROOTS = ("agents", "web", "models")
# Valkey commands counted per order: XREAD are the group-less followers (the API's
# WebSocket/SSE hubs), EVAL the once-only publishes of outbox events.
PER_ORDER_COMMANDS = ("xread", "eval")


@dataclass
class Contestant:
    """One stack and the figures of its legs (one entry per round)."""

    name: str
    stack: Stack
    legs: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {"noop": [], "post": []}
    )


def source_path(tree: Path) -> str:
    """``PYTHONPATH`` that makes a stack's processes import ``tree``'s orderflow first."""
    missing = [root for root in SOURCE_ROOTS if not (tree / root / "orderflow").is_dir()]
    if missing:
        raise StackError(f"--baseline {tree}: no orderflow source under {', '.join(missing)}")
    return os.pathsep.join(str(tree / root) for root in SOURCE_ROOTS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="post_cost.py",
        description=(
            "API CPU per POST /api/v1/orders and per no-op POST, and post_vs_noop, for this "
            "checkout and optionally a baseline checkout, interleaved in one run."
        ),
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="s per leg (5)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument("--item", default="margherita", help="item to order (margherita)")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="s to drain (180)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


async def command_calls(redis: Any) -> dict[str, int]:
    """Calls per command so far on the stack's Valkey (``INFO commandstats``)."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def measure_leg(
    contestant: Contestant, path: str, body: bytes, args: argparse.Namespace
) -> dict[str, float]:
    stack = contestant.stack
    api = pid_of(stack, "api")
    client = ConnectionPool("127.0.0.1", stack.port)
    try:
        await client.fill(args.connections)
        before = cpu_seconds(api)
        rps, ok, bad = await closed_loop_rate(client, path, body, args.seconds, args.connections)
        used = cpu_seconds(api) - before
    finally:
        await client.close()
    if ok == 0 or bad:
        raise StackError(f"{contestant.name} {path}: {ok} answers as expected, {bad} not")
    return {
        "rps": rps,
        "answers": ok,
        "api_cpu_ms": 1000 * used / ok,
        "api_cores": used / args.seconds,
    }


async def run_round(contestant: Contestant, body: bytes, args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    noop = await measure_leg(contestant, NOOP_PATH, body, args)
    redis = aioredis.Redis.from_url(contestant.stack.redis_url)
    try:
        before = await command_calls(redis)
        post = await measure_leg(contestant, ORDERS_PATH, body, args)
        await wait_drained(redis, args.drain_timeout)
        after = await command_calls(redis)
    finally:
        await redis.aclose()
    orders = post["answers"]
    for command in PER_ORDER_COMMANDS:  # from every process of the stack, per order
        post[f"{command}_per_order"] = (after.get(command, 0) - before.get(command, 0)) / orders
    contestant.stack.check_alive()
    contestant.legs["noop"].append(noop)
    contestant.legs["post"].append(post)
    log(
        f"{contestant.name}: no-op {noop['rps']:.0f}/s {noop['api_cpu_ms']:.3f} ms CPU; "
        f"POST {post['rps']:.0f}/s {post['api_cpu_ms']:.3f} ms CPU; "
        f"load {load_average()[0]:.2f}"
    )


def summary(contestant: Contestant) -> dict[str, Any]:
    def median(leg: str, key: str) -> float:
        return round(statistics.median(entry[key] for entry in contestant.legs[leg]), 3)

    ratios = [
        post["rps"] / noop["rps"]
        for noop, post in zip(contestant.legs["noop"], contestant.legs["post"], strict=True)
    ]
    return {
        "noop_rps": median("noop", "rps"),
        "post_rps": median("post", "rps"),
        "post_vs_noop": round(statistics.median(ratios), 4),
        "noop_api_cpu_ms": median("noop", "api_cpu_ms"),
        "post_api_cpu_ms": median("post", "api_cpu_ms"),
        "post_api_cores": median("post", "api_cores"),
        **{f"{c}_per_order": median("post", f"{c}_per_order") for c in PER_ORDER_COMMANDS},
        "rounds": contestant.legs,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # Admission control off: a closed-loop order leg outruns the service workers, and
    # the 503s it would answer once they are 1000 events behind cost the API far less
    # than an order (each round drains the backlog before the next leg).
    env = {"ORDERFLOW_BENCHMARK_NOOP_ROUTE": "true", "ORDERFLOW_ADMISSION_MAX_BACKLOG": "0"}
    trees: list[tuple[str, str | None]] = [("current", None)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", source_path(args.baseline.resolve())))
    body = json.dumps({"lines": [{"item_id": args.item, "quantity": 1}]}).encode()
    load_at_start = load_average()
    contestants: list[Contestant] = []
    try:
        for name, pythonpath in trees:
            extra = dict(env) if pythonpath is None else {**env, "PYTHONPATH": pythonpath}
            stack = Stack(http_workers=1, services=ALL_SERVICES, extra_env=extra)
            contestants.append(Contestant(name, stack))
            await stack.start()
            store = await stack.open_store()
            try:
                await store.set_stock(args.item, STOCK)
            finally:
                await store.close()
        for number in range(args.rounds):
            # Alternate who goes first, so neither always runs right after a drain.
            order = contestants if number % 2 == 0 else contestants[::-1]
            for contestant in order:
                await run_round(contestant, body, args)
    finally:
        for contestant in contestants:
            await contestant.stack.stop()
    return {
        "contestants": {c.name: summary(c) for c in contestants},
        "baseline": None if args.baseline is None else str(args.baseline),
        "seconds_per_leg": args.seconds,
        "connections": args.connections,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in load_average()],
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    header = (
        f"{'contestant':<10} {'no-op/s':>8} {'POST/s':>7} {'post/noop':>9} "
        f"{'no-op CPU ms':>12} {'POST CPU ms':>11} {'POST cores':>10} {'XREAD/order':>11}"
    )
    print("API CPU per request (medians over rounds)")
    print(header)
    print("-" * len(header))
    for name, s in result["contestants"].items():
        print(
            f"{name:<10} {s['noop_rps']:>8.0f} {s['post_rps']:>7.0f} {s['post_vs_noop']:>9.3f} "
            f"{s['noop_api_cpu_ms']:>12.3f} {s['post_api_cpu_ms']:>11.3f} "
            f"{s['post_api_cores']:>10.2f} {s['xread_per_order']:>11.2f}"
        )
    start, end = result["load_average_at_start"], result["load_average_at_end"]
    print(f"load average {start[0]} at start, {end[0]} at end")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1:
        print("--rounds and --connections must be >= 1, --seconds > 0", file=sys.stderr)
        return 2
    return run_benchmark("post_cost", run(args), lambda result: report(result, as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
