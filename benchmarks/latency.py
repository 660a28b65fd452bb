"""Latency of the live path: POST an order, see its updates arrive over the WebSocket.

With zero simulator delays every hop of the choreography is measured, not a
timer: API transaction and outbox publish, simulator, orders worker (persist +
publish), delivery worker, and the gateway's fan-out read to the socket.

Definitions (one order at a time, so no order waits behind another):

* ``t0`` is taken just before ``POST /api/v1/orders`` is sent. The order id is
  known only from the 201 answer, so the WebSocket
  ``/ws/v1/order-tracking/<id>`` is opened right after the POST returns; its
  first message is the snapshot (the latest status known at connect time).
* **first update**: ``t0`` -> the first ``order.status`` message received
  *after* the snapshot, i.e. the first status change the client is told about
  as it happens (normally ``confirmed``; if the order moved on before the socket
  opened, the snapshot already shows that and the next change is counted).
* **delivered**: ``t0`` -> the ``order.status`` message with status
  ``delivered`` (or the snapshot, if it already said ``delivered``).
* **first news**: ``t0`` -> the first message (snapshot or update) showing a
  status beyond ``created``: when the client first learns the order moved.
* **snapshot**: ``t0`` -> the snapshot received: the POST, then opening the socket
  (TCP connect, upgrade, the gateway's subscribe and its store + cache read). When
  it comes after the order's ``confirmed`` reached the gateway, the snapshot shows
  ``confirmed`` and the first update is the next status (``snapshot_beyond_created``).
* **reported -> ws**: for every ``order.status`` message, the receive time minus
  the message's ``at`` (the moment the simulator reported that status, delay 0):
  orders worker consume + store commit + outbox publish + gateway read + socket
  send. Same machine, same clock (wall time).

``--marks both`` compares the outbox's deferred "published" marks with marking at
once (``ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS=0``, the baseline) the same way: two
stacks of ``--layout``, orders alternating (``--json``: ``deferred`` and ``at-once``).

Per stage: every process's ``orderflow_*`` histograms (handler, outbox publish and
mark, HTTP, ...) scraped before and after the measured orders, one row per series that
grew (``benchmarks/stage_trace.py``; ``--json``: ``stages``, per layout).

Percentiles are nearest-rank. The first ``--warmup`` orders (at least one, which
must reach ``delivered``: proof the whole pipeline runs) are not counted.

``--layout`` picks the service workers' processes (docs/system.md, "Process
layouts"): ``split`` (one per service), ``combined`` (all in one), ``paired`` (the
store's writers in one, the others in another), or several side by side:
a comma-separated list, ``all``, or ``both`` (``split,combined``, its name from
before ``paired``): one private stack per layout, all running for the whole run,
the orders alternating between them (one to each, the order of the stacks reversed
every other order), so that a machine whose load changes during the run loads them
alike; the figures are printed side by side (``--json``: ``{"layout": "both",
"compared": ["split", "combined"], "split": {...}, "combined": {...}}``; with one
layout, the flat object plus ``"layout"``). An idle stack's blocking reads cost next
to nothing, but it is another API and set of workers on the machine.

    python benchmarks/latency.py --orders 200
    python benchmarks/latency.py --orders 300 --layout both
    python benchmarks/latency.py --orders 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as `python benchmarks/latency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.latency_order import HttpClient, Sample, http_client, measure_one
from benchmarks.stack import (
    ALL_SERVICES,
    Stack,
    StackError,
    log,
    percentile,
    print_table,
    run_benchmark,
)
from benchmarks.stage_trace import Scrape, hop_breakdown, print_stages, scrape, stage_rows
from orderflow.agents.services import LAYOUTS, Layout
from orderflow.agents.settings import Settings

RESULT_KEYS = (
    "orders",
    "first_update_p50_ms",
    "first_update_p99_ms",
    "delivered_p50_ms",
    "delivered_p99_ms",
    "post_p50_ms",
    "post_p99_ms",
    "first_news_p50_ms",
    "first_news_p99_ms",
    "snapshot_p50_ms",
    "snapshot_p99_ms",
    "reported_to_ws_p50_ms",
    "reported_to_ws_p99_ms",
    "snapshot_beyond_created",
    "timeouts",
)
MARK_MODES: dict[str, dict[str, str]] = {
    "deferred": {},
    "at-once": {"ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS": "0"},
}
"""``--marks``: the stack's environment for each way of marking the outbox published."""
MARKS_SETTLE_SECONDS = 2 * Settings.model_fields["outbox_mark_interval_seconds"].default + 0.1
"""Waited after the last order, before the stages are scraped: the deferred "published"
marks of the last orders are flushed every ``outbox_mark_interval_seconds``, so a short
run (the smoke test's five orders take about 0.2 s) would otherwise count none."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latency.py",
        description=(
            "Place ORDERS orders one after another on a private stack with zero simulator "
            "delays and measure POST -> first WebSocket status update and POST -> delivered "
            "(p50/p99 in ms). Progress on stderr, a summary on stdout."
        ),
    )
    parser.add_argument("--orders", type=int, default=200, help="measured orders (default 200)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="orders placed first and not counted (default 3)"
    )
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (default 1)")
    parser.add_argument("--item", default="margherita", help="item to order (default margherita)")
    parser.add_argument(
        "--order-timeout", type=float, default=30.0, help="seconds to wait for delivered"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    parser.add_argument(
        "--layout",
        type=layout_list,
        default=Settings.model_fields["demo_layout"].default,
        help=(
            "service worker processes: split (one per service), combined (all in one),"
            " paired (orders+delivery, simulator+notifications), or several side by side"
            " (a comma-separated list, 'all', or 'both' = split,combined: a stack per"
            " layout, orders alternating between them); default: the demo's default layout"
        ),
    )
    parser.add_argument(
        "--marks",
        choices=(*MARK_MODES, "both"),
        default="deferred",
        help="outbox marks: deferred (the default), at-once (the baseline), or both side by side",
    )
    parser.add_argument(
        "--store-options",
        default="",
        metavar="QUERY",
        help="the SQLite store URL's query, e.g. synchronous=normal (default: none)",
    )
    parser.add_argument(
        "--http-client",
        choices=("keepalive", "httpx"),
        default="keepalive",
        help=(
            "the POST's client: keepalive (benchmarks/keepalive.py, the default: a lean "
            "HTTP/1.1 client, so the figure is the system's) or httpx (the client until "
            "2026-11-26, 2.6-3.9 ms slower per POST by itself)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


LAYOUT_GROUPS: dict[str, tuple[Layout, ...]] = {"all": LAYOUTS, "both": ("split", "combined")}


def layouts_of(value: str) -> tuple[Layout, ...]:
    """The layouts ``--layout`` names, in order: one, a comma-separated list of them, or
    a group name; ``argparse.ArgumentTypeError`` for anything else."""
    names: tuple[str, ...] = LAYOUT_GROUPS.get(value) or tuple(value.split(","))
    if any(name not in LAYOUTS for name in names) or len(set(names)) != len(names):
        choices = ", ".join((*LAYOUTS, *LAYOUT_GROUPS))
        raise argparse.ArgumentTypeError(f"{value!r}: give layouts of {choices}, each once")
    return cast(tuple[Layout, ...], names)


def layout_list(value: str) -> str:
    """``--layout``'s type: checked by :func:`layouts_of`, kept as given (the JSON's label)."""
    layouts_of(value)
    return value


@dataclass
class LayoutRun:
    """One layout's private stack, its client and what its orders measured."""

    label: str
    layout: Layout
    stack: Stack
    client: HttpClient
    samples: list[Sample] = field(default_factory=list)
    since_id: str = ""
    metrics_before: Scrape = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)

    async def measure(self, args: argparse.Namespace) -> None:
        self.samples.append(
            await measure_one(
                self.client, self.stack.ws_url, args.item, args.order_timeout,
                self.stack.check_alive,
            )
        )  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every layout (or way of marking) asked for on its own private stack, all started
    before the first order; with two, the orders alternate between them (which goes
    first alternates too), so both see the same machine load over the run."""
    async with contextlib.AsyncExitStack() as resources:
        runs = []
        for label, layout, env in variants(args):
            log(f"{label}:")
            stack = Stack(
                http_workers=args.workers, services=ALL_SERVICES, keep=args.keep, layout=layout,
                extra_env=env, store_options=args.store_options,
            )  # fmt: skip
            await resources.enter_async_context(stack)
            client = http_client(args.http_client, stack)
            resources.push_async_callback(client.aclose)
            runs.append(LayoutRun(label, layout, stack, client))
        for one in runs:
            await warm_up(args, one)
        for index in range(args.orders):
            for one in runs if index % 2 == 0 else reversed(runs):
                await one.measure(args)
            if (index + 1) % 25 == 0 or index + 1 == args.orders:
                log(f"{index + 1}/{args.orders} orders measured per layout")
        await asyncio.sleep(MARKS_SETTLE_SECONDS)
        for one in runs:
            one.stack.check_alive()
            log(f"hops of {one.label} (cause -> effect; p50/p99 ms, count):")
            for hop, p50, p99, count in await hop_breakdown(one.stack.redis_url, one.since_id):
                log(f"  {p50:5.0f} {p99:5.0f} {count:5d}  {hop}")
            one.stages = stage_rows(one.metrics_before, await scrape(one.stack.metrics_urls()))
    results: dict[str, Any] = {
        one.label: {**summarize(one.samples), "stages": one.stages} for one in runs
    }
    if len(runs) == 1:
        return {
            "layout": runs[0].layout, "http_client": args.http_client,
            "store_options": args.store_options, **results[runs[0].label],
        }  # fmt: skip
    return {
        "layout": args.layout, "marks": args.marks, "http_client": args.http_client,
        "store_options": args.store_options, "compared": list(results), **results,
    }  # fmt: skip


def variants(args: argparse.Namespace) -> list[tuple[str, Layout, dict[str, str]]]:
    """(label, layout, environment) of each stack: the layouts, or the ways of marking."""
    if args.marks == "both":
        (layout,) = layouts_of(args.layout)
        return [(marks, layout, env) for marks, env in MARK_MODES.items()]
    return [(layout, layout, MARK_MODES[args.marks]) for layout in layouts_of(args.layout)]


async def warm_up(args: argparse.Namespace, one: LayoutRun) -> None:
    """Enough stock for every order; the warm-up orders, the first of which must be
    delivered (proof the whole pipeline runs)."""
    store = await one.stack.open_store()
    try:
        await store.set_stock(args.item, args.orders + args.warmup + 10)
    finally:
        await store.close()
    warmup = max(1, args.warmup)
    log(f"{one.label}: warm-up: {warmup} order(s), the first must reach delivered")
    first = await measure_one(one.client, one.stack.ws_url, args.item, 60.0, one.stack.check_alive)
    if first.delivered_ms is None:
        one.stack.check_alive()
        stored = await one.client.get(f"/api/v1/orders/{first.order_id}")
        raise StackError(
            f"warm-up order {first.order_id} never reached delivered on the WebSocket: "
            f"snapshot {first.snapshot_status!r}, then {first.seen}; "
            f"GET says {stored.status_code} {stored.text[:600]}"
        )
    for _ in range(warmup - 1):
        await one.measure(args)
    one.samples.clear()
    one.since_id = f"{int(time.time() * 1000)}-0"
    one.metrics_before = await scrape(one.stack.metrics_urls())


def summarize(samples: list[Sample]) -> dict[str, Any]:
    def ms(values: list[float], pct: float) -> float | None:
        return round(percentile(values, pct), 2) if values else None

    first = [s.first_update_ms for s in samples if s.first_update_ms is not None]
    delivered = [s.delivered_ms for s in samples if s.delivered_ms is not None]
    posts = [s.post_ms for s in samples]
    news = [s.first_news_ms for s in samples if s.first_news_ms is not None]
    snapshots = [s.snapshot_ms for s in samples if s.snapshot_ms is not None]
    reported = [value for s in samples for value in s.reported_to_ws_ms]
    if reported:
        log(f"reported->ws mean {statistics.fmean(reported):.2f} ms over {len(reported)} messages")
    return {
        "orders": len(samples),
        "first_update_p50_ms": ms(first, 50),
        "first_update_p99_ms": ms(first, 99),
        "delivered_p50_ms": ms(delivered, 50),
        "delivered_p99_ms": ms(delivered, 99),
        "post_p50_ms": ms(posts, 50),
        "post_p99_ms": ms(posts, 99),
        "first_news_p50_ms": ms(news, 50),
        "first_news_p99_ms": ms(news, 99),
        "snapshot_p50_ms": ms(snapshots, 50),
        "snapshot_p99_ms": ms(snapshots, 99),
        "reported_to_ws_p50_ms": ms(reported, 50),
        "reported_to_ws_p99_ms": ms(reported, 99),
        "snapshot_beyond_created": sum(1 for s in samples if s.snapshot_status != "created"),
        "timeouts": sum(1 for s in samples if s.delivered_ms is None),
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    title = "latency — POST -> WebSocket updates, zero simulator delays (ms)"
    layouts = result.get("compared") or [result["layout"]]
    runs = [result[layout] if len(layouts) > 1 else result for layout in layouts]
    if len(runs) == 1:
        print_table(f"{title}, {layouts[0]} layout", [(k, shown(runs[0][k])) for k in RESULT_KEYS])
    else:
        print(title)
        print(f"{'':<24}" + "".join(f"{layout:>12}" for layout in layouts))
        for key in RESULT_KEYS:
            print(f"{key:<24}" + "".join(f"{shown(run[key]):>12}" for run in runs))
    for layout, run_result in zip(layouts, runs, strict=True):
        print_stages(f"stages, {layout}", run_result["stages"])
        p99 = run_result["first_update_p99_ms"]
        if p99 is not None:
            verdict = "met" if p99 <= 10.0 else "NOT met"
            print(f"goal first update p99 <= 10 ms ({layout}): {verdict} ({p99:.2f} ms)")


def shown(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.orders < 1 or (args.marks == "both" and len(layouts_of(args.layout)) > 1):
        print("--orders must be >= 1; --marks both takes one layout", file=sys.stderr)
        return 2
    return run_benchmark("latency", run(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())
