"""What an idle stack costs: CPU per process with no order in flight.

Why: a stack that nobody uses still runs every App's timers, delayed-event scheduler,
lag poller and blocking reads; that is the floor every load step stands on, and on a
two-core machine it is taken from the orders. This starts a private stack (Valkey,
SQLite, the API with one worker and the service workers of ``--layout``), waits
``--warmup`` seconds for start-up to settle, then reads each process's CPU time
(``/proc``, children included) over ``--seconds`` with nothing sent to it.

    python benchmarks/idle.py
    python benchmarks/idle.py --seconds 30 --layout split --json

``cpu_share`` is CPU seconds per second of the window (1.0 = one core busy all the
time), per process and in ``total``; ``--json`` prints ``layout``, ``seconds``,
``cpu_share`` and ``load_average_1m`` (at the start: the machine's other load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/idle.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.procstat import cpu_seconds, load_average
from benchmarks.stack import (
    ALL_SERVICES,
    DEMO_LAYOUT,
    Stack,
    log,
    pid_of,
    print_table,
    run_benchmark,
)
from orderflow.agents.services import LAYOUTS


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack(http_workers=1, services=ALL_SERVICES, layout=args.layout, keep=args.keep)
    async with stack:
        pids = {child.name: pid_of(stack, child.name) for child in stack.processes}
        assert stack.redis is not None and stack.redis.process is not None
        pids["valkey"] = stack.redis.process.pid
        log(f"stack up; {args.warmup:g} s of warm-up, then {args.seconds:g} s measured")
        await asyncio.sleep(args.warmup)
        load_1m = load_average()[0]
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        window = time.monotonic() - started
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        stack.check_alive()
    shares = {name: (after[name] - before[name]) / window for name in pids}
    shares["total"] = sum(shares.values())
    return {
        "layout": args.layout,
        "seconds": round(window, 2),
        "cpu_share": {name: round(share, 4) for name, share in shares.items()},
        "load_average_1m": load_1m,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    rows: list[tuple[str, object]] = [
        (f"{name} (cores)", f"{share:.3f}") for name, share in result["cpu_share"].items()
    ]
    rows.append(("seconds measured", result["seconds"]))
    rows.append(("load average at start", result["load_average_1m"]))
    print_table(f"idle stack — CPU per process, {result['layout']} layout", rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="CPU per process of a private full stack with nothing sent to it "
        "(timers, schedulers, blocking reads). Progress on stderr, a table on stdout."
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured s (20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="s before measuring (5)")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=DEMO_LAYOUT, help="worker processes (the demo's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    return run_benchmark("idle", measure(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())
