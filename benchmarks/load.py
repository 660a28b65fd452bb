"""The load curve of the whole pipeline, its knee, and POST against a no-op POST.

Starts its own stack (benchmarks/stack.py: Valkey, the ``--store`` -- SQLite by
default; ``--store-options`` is its URL's query, e.g. ``group_commit=off`` --,
``orderflow api`` and every service worker, zero simulator delays, the order rate
limit lifted, the item's stock raised so that nothing is refused), then, for each
offered rate in ``--rates``, runs one open-loop step (benchmarks/load_step.py says
what a step measures). The **knee** is the highest offered rate carried with achieved >= 95 %
of offered, delivered p99 <= 1 s and no errors (``load_step.carried``).

``post_vs_noop`` (measured first, on the same stack): ``POST /api/v1/orders``
requests/s divided by ``POST /api/v1/benchmark/noop`` requests/s (the app's no-op
JSON route, served because the stack sets ``ORDERFLOW_BENCHMARK_NOOP_ROUTE=true``),
same API workers, same client (benchmarks/keepalive.py, ``--noop-connections``
keep-alive connections, each sending its next request when the last one is
answered), same body bytes, ``--noop-seconds`` each, while the service workers run.
``post_vs_noop_client_cpu_share`` (per leg) and each step's ``client_cpu_share``:
this process's CPU (the HTTP client, and in the steps also the WebSocket
followers) per second, 1.0 = one core, so a reader can tell whether the client,
not the server, set a rate.

    python benchmarks/load.py --rates 25,50,100 --seconds 15
    python benchmarks/load.py --json --plot docs/load.png
    python benchmarks/load.py --store postgres --store-options group_commit=off
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/load.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.keepalive import ConnectionPool, encode_request
from benchmarks.load_plot import plot
from benchmarks.load_step import StepConfig, carried, knee, run_step, step_rates, stream_lag
from benchmarks.procstat import cpu_seconds, load_average, run_queue_wait_seconds
from benchmarks.stack import (
    ALL_SERVICES,
    DEMO_LAYOUT,
    STORES,
    Stack,
    StackError,
    log,
    pid_of,
    run_benchmark,
)
from benchmarks.stage_trace import scrape
from orderflow.agents.services import LAYOUTS
from orderflow.agents.settings import Settings

DEFAULT_ADMISSION_MAX_BACKLOG: int = Settings.model_fields["admission_max_backlog"].default

NOOP_PATH = "/api/v1/benchmark/noop"
STOCK = 10_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="load.py",
        description=(
            "Open-loop load steps at increasing offered rates (orders/s) against a private "
            "full stack with zero simulator delays; per step achieved orders/s, POST and "
            "WebSocket latency percentiles, errors, stream lag and drain time; the knee "
            "(highest rate carried: achieved >= 95%% of offered, delivered p99 <= 1 s, no "
            "errors) and post_vs_noop. Progress on stderr, a table on stdout."
        ),
    )
    rates = "25,50,100,150,200,250,300"
    parser.add_argument("--rates", default=rates, help=f"orders/s, comma-separated ({rates})")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured s per step (15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured s per step (3)")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (default 1)")
    parser.add_argument("--item", default="margherita", help="item to order (default margherita)")
    parser.add_argument(
        "--track-per-second",
        type=float,
        default=2.0,
        help="orders per second followed over a WebSocket (default 2; every k-th order)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="keep-alive connections opened before each step (64); a send opens another "
        "when all are busy, never waits",
    )
    parser.add_argument(
        "--order-timeout", type=float, default=60.0, help="s a followed order may take (60)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="s a step may take to drain (180)"
    )
    parser.add_argument(
        "--stop-below",
        type=float,
        default=0.5,
        help="skip the higher rates once a step achieves less than this share (0.5)",
    )
    parser.add_argument("--noop-seconds", type=float, default=5.0, help="s per post_vs_noop leg")
    parser.add_argument(
        "--noop-connections", type=int, default=16, help="connections of post_vs_noop (16)"
    )
    parser.add_argument("--plot", type=Path, help="draw the curve into this PNG (matplotlib)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=DEMO_LAYOUT,
        help=f"service worker processes (docs/system.md); default {DEMO_LAYOUT}, the demo's",
    )
    parser.add_argument(
        "--worker-replicas",
        type=int,
        default=1,
        metavar="N",
        help="run each worker process of the layout N times, consumers of the same groups (1)",
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="store adapter: sqlite (default: a fresh file in the run's temp dir); postgres (a "
        "private PostgreSQL the run starts); mongodb (the replica set named by "
        "ORDERFLOW_MONGO_URL)",
    )
    parser.add_argument(
        "--store-options",
        "--sqlite-options",
        dest="store_options",
        default="",
        help="query of the SQLite or PostgreSQL store URL every process gets, e.g. "
        "writer_lock=off or group_commit=off (none; --sqlite-options is its older name)",
    )
    parser.add_argument(
        "--admission-max-backlog",
        type=int,
        default=DEFAULT_ADMISSION_MAX_BACKLOG,
        help="the API's admission-control bound in events behind (0: off; default "
        f"{DEFAULT_ADMISSION_MAX_BACKLOG}, the product's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


async def closed_loop_rate(
    pool: ConnectionPool, path: str, body: bytes, seconds: float, connections: int
) -> tuple[float, int, int]:
    """(answers/s with the expected status, those answers, other answers) over ``seconds``.

    ``connections`` are opened before the clock starts; each carries one request at a
    time, so the pool always has the next one's connection idle.
    """
    expected = 201 if path == "/api/v1/orders" else 200
    raw = encode_request("POST", path, f"{pool.host}:{pool.port}", body)
    counts = {"ok": 0, "bad": 0}
    await pool.fill(connections)
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            try:
                async with asyncio.timeout(30):
                    response = await pool.request(raw)
            except (OSError, TimeoutError):
                counts["bad"] += 1
                continue
            counts["ok" if response.status == expected else "bad"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return counts["ok"] / elapsed, counts["ok"], counts["bad"]


async def wait_drained(redis: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while await stream_lag(redis) > 0:
        if time.monotonic() > deadline:
            raise StackError(f"the pipeline did not drain within {within:.0f}s")
        await asyncio.sleep(0.05)  # the lag is in the server: polled, with a deadline


async def run(args: argparse.Namespace, rates: list[float]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    env = {
        "ORDERFLOW_BENCHMARK_NOOP_ROUTE": "true",
        "ORDERFLOW_ADMISSION_MAX_BACKLOG": str(args.admission_max_backlog),
    }
    stack = Stack(
        http_workers=args.workers,
        services=ALL_SERVICES,
        keep=args.keep,
        extra_env=env,
        store=args.store,
        layout=args.layout,
        worker_replicas=args.worker_replicas,
        store_options=args.store_options,
    )
    body = json.dumps({"lines": [{"item_id": args.item, "quantity": 1}]}).encode()
    load_at_start = load_average()
    async with stack:
        store = await stack.open_store()
        try:
            await store.set_stock(args.item, STOCK)
        finally:
            await store.close()
        pids = {child.name: pid_of(stack, child.name) for child in stack.processes}
        assert stack.redis is not None and stack.redis.process is not None
        pids["valkey"] = stack.redis.process.pid

        def sample_cpu() -> dict[str, float]:
            sample = {name: cpu_seconds(pid) for name, pid in pids.items()}
            # This process only: the stack's processes are its children.
            sample["load.py"] = cpu_seconds(os.getpid(), include_descendants=False)
            return sample

        def sample_wait() -> dict[str, float]:
            sample = {name: run_queue_wait_seconds(pid) for name, pid in pids.items()}
            sample["load.py"] = run_queue_wait_seconds(os.getpid(), include_descendants=False)
            return sample

        redis = aioredis.Redis.from_url(stack.redis_url)
        client = ConnectionPool("127.0.0.1", stack.port)
        try:
            legs_cpu = [sample_cpu()]
            noop_rps, noop_ok, noop_bad = await closed_loop_rate(
                client, NOOP_PATH, body, args.noop_seconds, args.noop_connections
            )
            legs_cpu.append(sample_cpu())
            post_rps, post_ok, post_bad = await closed_loop_rate(
                client, "/api/v1/orders", body, args.noop_seconds, args.noop_connections
            )
            legs_cpu.append(sample_cpu())
            # Who was busy in each leg: a client near 1.0 means the client, not the
            # API, set the no-op rate (then post_vs_noop flatters the order route).
            noop_cpu, post_cpu = (
                {name: round((after[name] - before[name]) / args.noop_seconds, 2) for name in after}
                for before, after in itertools.pairwise(legs_cpu)
            )
            client_cpu = {"noop": noop_cpu["load.py"], "post": post_cpu["load.py"]}
            if noop_ok == 0 or post_ok == 0:
                raise StackError(f"post_vs_noop: no answer (noop {noop_bad}, post {post_bad} bad)")
            log(
                f"post_vs_noop: POST /api/v1/orders {post_rps:.0f}/s, no-op {noop_rps:.0f}/s "
                f"-> {post_rps / noop_rps:.3f} ({args.noop_connections} connections; "
                f"client CPU {client_cpu['noop']} / {client_cpu['post']} core, "
                f"API {noop_cpu.get('api')} / {post_cpu.get('api')})"
            )
            await wait_drained(redis, args.drain_timeout)
            steps: list[dict[str, Any]] = []
            for rate in rates:
                await client.fill(args.connections)
                config = StepConfig(
                    rate=rate,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    track_every=max(1, round(rate / args.track_per_second)),
                    order_timeout=args.order_timeout,
                    drain_timeout=args.drain_timeout,
                )
                log(f"step {rate:g} orders/s: {args.warmup:g}s warm-up + {args.seconds:g}s")
                record = await run_step(
                    config, client, redis, stack.ws_url, body, sample_cpu, sample_wait,
                    lambda: scrape(stack.metrics_urls()),
                )  # fmt: skip
                stack.check_alive()
                step = record.summary()
                step["load_average_1m"] = round(load_average()[0], 2)
                steps.append(step)
                log(
                    f"  achieved {step['achieved_per_s']}/s, POST p99 {step['post_p99_ms']} ms, "
                    f"delivered p99 {step['delivered_p99_ms']} ms, errors {step['errors']}, "
                    f"lag {step['lag_at_end']}, drained in {step['drain_s']} s, store in "
                    f"commits {step['store_commit_share'].get('total')} of the time, "
                    f"{'carried' if carried(step) else 'NOT carried'}"
                )
                if step["drain_s"] is None or step["achieved_per_s"] < args.stop_below * rate:
                    share = f"{args.stop_below:.0%}"
                    log(f"  stopping: this step achieved under {share} or never drained")
                    break
        finally:
            await client.close()
            await redis.aclose()
    return {
        "steps": steps,
        "knee_orders_per_s": knee(steps),
        "post_vs_noop": round(post_rps / noop_rps, 4),
        "post_rps": round(post_rps, 1),
        "noop_rps": round(noop_rps, 1),
        "post_vs_noop_errors": post_bad + noop_bad,
        "noop_cpu_share": noop_cpu,
        "post_cpu_share": post_cpu,
        "post_vs_noop_client_cpu_share": client_cpu,
        "http_client": "benchmarks/keepalive.py",
        "api_workers": args.workers,
        "store": args.store,
        "layout": args.layout,
        "worker_replicas": args.worker_replicas,
        "store_options": args.store_options,
        "admission_max_backlog": args.admission_max_backlog,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    header = (
        f"{'offered':>8} {'achieved':>9} {'POST p50':>9} {'POST p99':>9} {'1st upd p99':>12} "
        f"{'deliv p99':>10} {'lag':>6} {'drain s':>8} {'late':>5} {'client':>6} {'shed':>6}  errors"
    )
    print("load curve (orders/s; ms)")
    print(header)
    print("-" * len(header))

    def show(value: Any) -> str:
        return "n/a" if value is None else str(value)

    for s in result["steps"]:
        print(
            f"{s['offered_per_s']:>8g} {s['achieved_per_s']:>9} {show(s['post_p50_ms']):>9} "
            f"{show(s['post_p99_ms']):>9} {show(s['first_update_p99_ms']):>12} "
            f"{show(s['delivered_p99_ms']):>10} {s['lag_at_end']:>6} {show(s['drain_s']):>8} "
            f"{s['late_sends']:>5} {s['client_cpu_share']:>6} {s.get('shed', 0):>6}  "
            f"{s['errors'] or '-'}"
        )
    print(f"knee_orders_per_s  {show(result['knee_orders_per_s'])}  (goal >= 300)")
    print(
        f"post_vs_noop       {result['post_vs_noop']}  ({result['post_rps']} / "
        f"{result['noop_rps']} requests/s; goal >= 0.5)"
    )
    client, noop_api = result["post_vs_noop_client_cpu_share"], result["noop_cpu_share"].get("api")
    print(
        f"client CPU (cores): no-op leg {client['noop']} (API {noop_api}), "
        f"order leg {client['post']}; steps: column 'client'"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rates = step_rates(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2

    def finish(result: dict[str, Any]) -> None:
        if args.plot is not None:
            plot(result, args.plot)
        report(result, args.json)

    return run_benchmark("load", run(args, sorted(rates)), finish)


if __name__ == "__main__":
    sys.exit(main())
