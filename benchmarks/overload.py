"""Admission control side by side: the same overload with it off and on, in one run.

For each leg (``off``: ``ORDERFLOW_ADMISSION_MAX_BACKLOG=0``; ``on``: ``--bound``) a
fresh private stack (benchmarks/stack.py: Valkey, SQLite, ``orderflow api`` and every
service worker, zero simulator delays, the item's stock raised) takes the same
open-loop steps at ``--rates`` (benchmarks/load_step.py says what a step measures).
Per step and leg: achieved (delivered) orders/s, accepted, ``shed`` (503 ``overloaded``:
refused by admission control), errors, POST / first-update / delivered percentiles,
the backlog at the end of the schedule and the drain time. After each leg the orders
in the store are counted: ``orders_in_store`` equals the orders accepted, so a refused
order ordered nothing.

What to look for past the knee: with admission control on, what is carried stays near
the most the stack can carry and delivered latency stays bounded; with it off, every
order is taken, the backlog grows, and what is delivered in the window falls.

    python benchmarks/overload.py --rates 300 --seconds 20
    python benchmarks/overload.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/overload.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.keepalive import ConnectionPool
from benchmarks.load import DEFAULT_ADMISSION_MAX_BACKLOG, STOCK
from benchmarks.load_step import StepConfig, run_step, step_rates
from benchmarks.procstat import cpu_seconds, load_average, run_queue_wait_seconds
from benchmarks.stack import ALL_SERVICES, Stack, log, pid_of, run_benchmark


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overload.py",
        description=(
            "The same open-loop overload against a private full stack with admission "
            "control off and on (each leg its own stack): achieved orders/s, shed, "
            "errors, latency percentiles, backlog and drain time per step, and the "
            "orders in the store. Progress on stderr, a table on stdout."
        ),
    )
    parser.add_argument(
        "--rates", default="300", help="offered orders/s, comma-separated (default 300)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured s per step (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured s per step (3)")
    parser.add_argument(
        "--bound",
        type=positive_int,
        default=DEFAULT_ADMISSION_MAX_BACKLOG,
        help=f"ORDERFLOW_ADMISSION_MAX_BACKLOG of the 'on' leg (default "
        f"{DEFAULT_ADMISSION_MAX_BACKLOG}, the product's)",
    )
    parser.add_argument(
        "--track-per-second",
        type=float,
        default=2.0,
        help="orders per second followed over a WebSocket (default 2)",
    )
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (default 1)")
    parser.add_argument("--item", default="margherita", help="item to order (default margherita)")
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="s a step may take to drain (180)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


async def run_leg(args: argparse.Namespace, rates: list[float], bound: int) -> dict[str, Any]:
    """One stack with ``ORDERFLOW_ADMISSION_MAX_BACKLOG=bound``; its steps and store count."""
    import redis.asyncio as aioredis

    stack = Stack(
        http_workers=args.workers,
        services=ALL_SERVICES,
        extra_env={"ORDERFLOW_ADMISSION_MAX_BACKLOG": str(bound)},
    )
    body = json.dumps({"lines": [{"item_id": args.item, "quantity": 1}]}).encode()
    async with stack:
        store = await stack.open_store()
        try:
            await store.set_stock(args.item, STOCK)
            orders_before = await store.count_orders()
        finally:
            await store.close()
        pids = {child.name: pid_of(stack, child.name) for child in stack.processes}

        def sample_cpu() -> dict[str, float]:
            return {name: cpu_seconds(pid) for name, pid in pids.items()}

        def sample_wait() -> dict[str, float]:
            return {name: run_queue_wait_seconds(pid) for name, pid in pids.items()}

        redis = aioredis.Redis.from_url(stack.redis_url)
        client = ConnectionPool("127.0.0.1", stack.port)
        steps: list[dict[str, Any]] = []
        try:
            for rate in rates:
                await client.fill(64)
                config = StepConfig(
                    rate=rate, seconds=args.seconds, warmup=args.warmup,
                    track_every=max(1, round(rate / args.track_per_second)),
                    order_timeout=120.0, drain_timeout=args.drain_timeout,
                )  # fmt: skip
                log(f"admission {'off' if bound == 0 else f'on ({bound})'}: {rate:g} orders/s")
                record = await run_step(
                    config, client, redis, stack.ws_url, body, sample_cpu, sample_wait
                )
                stack.check_alive()
                step = record.summary()
                steps.append(step)
                log(
                    f"  achieved {step['achieved_per_s']}/s, shed {step['shed']}, "
                    f"delivered p99 {step['delivered_p99_ms']} ms, errors {step['errors']}"
                )
        finally:
            await client.close()
            await redis.aclose()
        store = await stack.open_store()
        try:
            orders = await store.count_orders() - orders_before
        finally:
            await store.close()
    return {"admission_max_backlog": bound, "steps": steps, "orders_in_store": orders}


async def run(args: argparse.Namespace, rates: list[float]) -> dict[str, Any]:
    load_at_start = load_average()
    legs = [await run_leg(args, rates, bound) for bound in (0, args.bound)]
    return {
        "legs": legs,
        "api_workers": args.workers,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return

    def show(value: Any) -> str:
        return "n/a" if value is None else str(value)

    header = (
        f"{'admission':>10} {'offered':>8} {'achieved':>9} {'accepted':>9} {'shed':>6} "
        f"{'POST p99':>9} {'1st upd p99':>12} {'deliv p99':>10} {'backlog':>8} {'drain s':>8}"
        "  errors"
    )
    print("admission control under overload (orders/s; ms)")
    print(header)
    print("-" * len(header))
    for leg in result["legs"]:
        bound = leg["admission_max_backlog"]
        name = "off" if bound == 0 else f"on {bound}"
        for s in leg["steps"]:
            print(
                f"{name:>10} {s['offered_per_s']:>8g} {s['achieved_per_s']:>9} "
                f"{s['accepted']:>9} {s['shed']:>6} {show(s['post_p99_ms']):>9} "
                f"{show(s['first_update_p99_ms']):>12} {show(s['delivered_p99_ms']):>10} "
                f"{s['lag_at_end']:>8} {show(s['drain_s']):>8}  {s['errors'] or '-'}"
            )
        print(f"{name:>10} orders in the store: {leg['orders_in_store']}")
    print(f"load average at start: {result['load_average_at_start']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rates = step_rates(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run_benchmark("overload", run(args, rates), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())
