"""Oversell proof: C concurrent buyers race for the last K units of one item over real HTTP.

The claim under test is that the order transaction (stock check, decrement,
order and outbox rows, all or nothing) never sells more than there is, even when
every buyer arrives at the same instant on an API with several worker
processes. The benchmark starts its own stack, sets one item's stock to K,
releases C POST /api/v1/orders requests at once, waits for the outbox to reach
``orders-stream``, and then counts from three independent sources: the HTTP
answers, the store (stock left, orders written) and the stream (order.created.v1
events for the item).

``--naive`` is the negative control: the same load against a deliberately naive
read-then-write stock update (``benchmarks/naive_api.py``, which exists only
here) on the same schema and database (SQLite or PostgreSQL). It shows that the
transaction, not luck or a slow client, is what prevents overselling.

    python benchmarks/oversell.py --buyers 1000 --stock 10
    python benchmarks/oversell.py --buyers 1000 --stock 10 --naive
    python benchmarks/oversell.py --buyers 1000 --stock 10 --store postgres
    python benchmarks/oversell.py --buyers 60 --stock 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/oversell.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.buyers import fire
from benchmarks.stack import (
    RELAY_ONLY,
    STORES,
    Stack,
    StackError,
    log,
    print_table,
    run_benchmark,
)
from orderflow.agents.topics import ORDERS_STREAM
from orderflow.models.events import OrderCreated

ORDER_CREATED = OrderCreated.event_type
RESULT_KEYS = (
    "mode",
    "buyers",
    "stock",
    "succeeded",
    "rejected",
    "errors",
    "final_stock",
    "orders_in_store",
    "created_events",
    "oversold",
    "elapsed_s",
    "throughput_rps",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oversell.py",
        description=(
            "Fire BUYERS concurrent orders over real HTTP at one item that has STOCK units left "
            "and count what was sold: from the HTTP answers, the store and orders-stream. "
            "Starts and stops its own stack (Valkey, store, API with several workers, outbox "
            "relay). Progress on stderr, a summary on stdout."
        ),
    )
    parser.add_argument("--buyers", type=int, default=1000, help="concurrent buyers (default 1000)")
    parser.add_argument("--stock", type=int, default=10, help="units of the item (default 10)")
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="store adapter: sqlite (default: a fresh file in the run's temp dir); postgres (a "
        "private PostgreSQL the run starts from the server binaries, e.g. Debian's "
        "/usr/lib/postgresql/*/bin, on a free port in a temp dir, as nobody when root, and "
        "stops at the end); mongodb (the replica set named by ORDERFLOW_MONGO_URL)",
    )
    parser.add_argument(
        "--naive",
        action="store_true",
        help="NEGATIVE CONTROL: a naive read-then-write stock update with no transaction "
        "(benchmarks/naive_api.py; sqlite or postgres)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="API worker processes (default 2, at least 2)"
    )
    parser.add_argument("--item", default="margherita", help="item to buy (default margherita)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="per-request timeout in seconds (default 120)"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: pre-opened asyncio connections, all requests written at once (default); "
        "httpx: one httpx.AsyncClient (much slower at 1000 buyers, see docs/benchmarks.md)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


async def created_events(redis_url: str, item_id: str) -> tuple[int, set[str]]:
    """order.created.v1 entries in orders-stream that contain ``item_id``, and their order ids."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    entries = 0
    order_ids: set[str] = set()
    event_ids: set[str] = set()
    try:
        last = "-"
        while True:
            batch: Any = await client.xrange(ORDERS_STREAM, min=last, max="+", count=1000)
            if last != "-" and batch and batch[0][0] == last:
                batch = batch[1:]
            if not batch:
                break
            for _entry_id, fields in batch:
                if fields.get("event_type") != ORDER_CREATED:
                    continue
                payload = json.loads(fields.get("payload") or "{}")
                if any(line.get("item_id") == item_id for line in payload.get("lines", [])):
                    entries += 1
                    event_ids.add(fields.get("event_id", ""))
                    order_ids.add(str(payload.get("order_id")))
            last = batch[-1][0]
    finally:
        await client.aclose()
    if len(event_ids) != entries:
        log(f"note: {entries} entries but {len(event_ids)} distinct event ids (duplicates)")
    return entries, order_ids


async def wait_for_outbox(
    stack: Stack, store: Any, item_id: str, naive: bool
) -> tuple[int, set[str]]:
    """Wait until the event count for the item is stable and (real mode) the outbox is empty."""
    deadline = time.monotonic() + 60.0
    previous = -1
    stable_since = time.monotonic()
    while True:
        count, ids = await created_events(stack.redis_url, item_id)
        pending = 0 if naive else len(await store.outbox_pending(limit=1000))
        now = time.monotonic()
        if count != previous:
            previous, stable_since = count, now
        if pending == 0 and now - stable_since >= 1.0:
            return count, ids
        if now > deadline:
            log(f"outbox did not settle within 60s ({pending} pending, {count} events)")
            return count, ids
        await asyncio.sleep(0.2)


async def stock_of(store: Any, item_id: str) -> int:
    for item in await store.list_menu():
        if item.id == item_id:
            return int(item.stock)
    raise StackError(f"item {item_id!r} is not on the menu")


def naive_api_argv() -> list[str]:
    script = Path(__file__).resolve().parent / "naive_api.py"
    return [sys.executable, str(script), "--port", "{port}", "--workers", "{workers}"]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = "naive" if args.naive else "transactional"
    if args.naive and args.store == "mongodb":
        raise StackError("--naive works on the sqlite and postgres schemas only")
    stack = Stack(
        http_workers=args.workers,
        services=() if args.naive else RELAY_ONLY,
        store=args.store,
        api_argv=naive_api_argv() if args.naive else None,
        keep=args.keep,
    )
    if args.naive:
        log("NAIVE MODE: read-then-write stock update without a transaction (negative control)")
    async with stack:
        store = await stack.open_store()
        try:
            await store.set_stock(args.item, args.stock)
            before = await store.count_orders(args.item)
            log(f"{args.item}: stock set to {args.stock}")
            counts, order_ids, elapsed = await fire(
                stack.base_url, args.item, args.buyers, args.timeout, args.client
            )
            stack.check_alive()
            log(
                f"answers: {counts['succeeded']} x 201, {counts['rejected']} x 409, "
                f"{counts['error']} errors in {elapsed:.2f}s; waiting for the outbox"
            )
            events, event_order_ids = await wait_for_outbox(stack, store, args.item, args.naive)
            final_stock = await stock_of(store, args.item)
            in_store = await store.count_orders(args.item) - before
        finally:
            await store.close()
    if set(order_ids) != event_order_ids:
        log(
            f"note: {len(set(order_ids) - event_order_ids)} answered order(s) without an event, "
            f"{len(event_order_ids - set(order_ids))} event(s) without an answered order"
        )
    succeeded = counts["succeeded"]
    oversold = max(0, succeeded - args.stock, in_store - args.stock)
    return {
        "mode": mode,
        "buyers": args.buyers,
        "stock": args.stock,
        "succeeded": succeeded,
        "rejected": counts["rejected"],
        "errors": counts["error"],
        "final_stock": final_stock,
        "orders_in_store": in_store,
        "created_events": events,
        "oversold": oversold,
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(args.buyers / elapsed, 1) if elapsed > 0 else 0.0,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    naive = result["mode"] == "naive"
    title = (
        "oversell — NAIVE read-then-write (negative control, no transaction)"
        if naive
        else "oversell — transactional order placement"
    )
    print_table(title, [(key, result[key]) for key in RESULT_KEYS if key != "mode"])
    verdict = "OVERSOLD" if result["oversold"] else "no oversell"
    print(f"verdict: {verdict} ({result['oversold']} unit(s) sold beyond stock)")


def raise_open_files_limit(needed: int) -> None:
    """One socket per buyer: lift the soft descriptor limit (often 1024) toward the hard one.

    The stack's processes inherit the raised limit too.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft != resource.RLIM_INFINITY and soft < needed:
        log(f"warning: open-file limit {soft} < {needed}; expect connection errors (ulimit -n)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.buyers < 1 or args.stock < 0:
        print("--buyers must be >= 1 and --stock >= 0", file=sys.stderr)
        return 2
    if args.workers < 2:
        log("warning: fewer than 2 API workers does not exercise cross-process races")
    raise_open_files_limit(args.buyers + 256)
    return run_benchmark("oversell", run(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())
