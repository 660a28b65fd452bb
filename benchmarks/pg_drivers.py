"""PostgreSQL drivers side by side: psycopg 3 (+ psycopg_pool) and asyncpg.

Why this exists: the PostgreSQL store had to pick one asyncio driver, and the
choice was to be made by a measurement rather than by reputation. This script
runs the store's order transaction -- the same SQL text
(``orderflow.models.store.postgres_sql``), the same parameters, the same outbox
messages -- with each driver, against one private PostgreSQL it starts itself
(``LocalPostgres``: Debian's binaries, a temporary directory, a free port; as
``nobody`` when run as root). Per driver, over a pool of ``--pool`` connections:

* **sequential**: ``--orders`` orders one after the other (two lines each, random
  items of the demo menu): latency p50 / p99 of the whole transaction
  (``BEGIN``, lock + read the items, the write statement, ``COMMIT``);
* **concurrent**: ``--concurrent`` orders started at once (spread over the menu):
  orders per second;
* **hot item**: ``--concurrent`` orders of the *same* item started at once: every
  transaction queues on one row lock, so this is the oversell rush.

Rounds are interleaved (psycopg, asyncpg, psycopg, ...; ``--repeat``) and the
median of the rounds is reported. The server keeps PostgreSQL's durable defaults
(``fsync``, ``synchronous_commit``) unless ``--no-fsync``, which leaves only the
driver's and the server's CPU work to compare. ``--no-notify`` drops the outbox's
``NOTIFY`` trigger, to see what waking the relay costs the order transaction
(PostgreSQL serialises the commits of notifying transactions).

    .venv/bin/python benchmarks/pg_drivers.py
    .venv/bin/python benchmarks/pg_drivers.py --orders 2000 --concurrent 2000 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import asyncpg
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

if __package__ in (None, ""):  # run as `python benchmarks/pg_drivers.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stack import percentile
from orderflow.agents.messages import order_created_messages
from orderflow.agents.processes import parent_death_signal
from orderflow.models.documents import OrderLineRequest
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import check_stock, new_order, out_of_stock, wanted_quantities
from orderflow.models.store import postgres_sql as sql
from orderflow.models.store.localpostgres import LocalPostgres, PostgresNotFound

STOCK = 1_000_000_000
RESET = """
TRUNCATE order_lines, order_history, delivery_history, deliveries, outbox, orders;
UPDATE menu_items SET stock = {stock};
"""
RESULT_KEYS = (
    "driver",
    "version",
    "seq_p50_ms",
    "seq_p99_ms",
    "concurrent_orders_per_s",
    "hot_item_orders_per_s",
)


class Orders(Protocol):
    """One driver's pool and its run of the order transaction."""

    name: str
    version: str

    async def open(self, url: str, size: int) -> None: ...

    async def place(self, lines: Sequence[OrderLineRequest]) -> None: ...

    async def close(self) -> None: ...


def prepare_order(
    lines: Sequence[OrderLineRequest], wanted: Mapping[str, int], items: Mapping[str, Any]
) -> tuple[object, ...]:
    """What both drivers do between their two statements: check, build, outbox."""
    check_stock(wanted, items)
    order = new_order(lines, items)
    outbox = order_created_messages(order, correlation_id=order.id)
    return sql.write_order_params(order, wanted, None, None, outbox)


def check_decremented(count: int, wanted: Mapping[str, int], items: Mapping[str, Any]) -> None:
    if count != len(wanted):  # cannot happen under the row locks; the store checks it too
        item_id = next(iter(wanted))
        raise out_of_stock(item_id, items[item_id], wanted[item_id])


class PsycopgOrders:
    name = "psycopg"
    version = psycopg.__version__

    async def open(self, url: str, size: int) -> None:
        self.pool = AsyncConnectionPool(
            url,
            min_size=size,
            max_size=size,
            open=False,
            kwargs={
                "autocommit": True,  # transactions are explicit blocks
                "cursor_factory": psycopg.AsyncRawCursor,  # $n placeholders
                "row_factory": dict_row,
            },
        )
        await self.pool.open(wait=True)

    async def place(self, lines: Sequence[OrderLineRequest]) -> None:
        wanted = wanted_quantities(lines)
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(sql.LOCK_ITEMS, (list(wanted),))
            rows = cast(list[dict[str, Any]], await cursor.fetchall())  # dict_row
            items = {row["id"]: row for row in rows}
            cursor = await conn.execute(sql.WRITE_ORDER, prepare_order(lines, wanted, items))
            row = cast(dict[str, Any] | None, await cursor.fetchone())
            assert row is not None
            check_decremented(row["count"], wanted, items)

    async def close(self) -> None:
        await self.pool.close()


class AsyncpgOrders:
    name = "asyncpg"
    version = asyncpg.__version__

    async def open(self, url: str, size: int) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=size, max_size=size)

    async def place(self, lines: Sequence[OrderLineRequest]) -> None:
        wanted = wanted_quantities(lines)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.LOCK_ITEMS, list(wanted))
            items = {row["id"]: row for row in rows}
            count = await conn.fetchval(sql.WRITE_ORDER, *prepare_order(lines, wanted, items))
            check_decremented(count, wanted, items)

    async def close(self) -> None:
        await self.pool.close()


DRIVERS: dict[str, Callable[[], Orders]] = {"psycopg": PsycopgOrders, "asyncpg": AsyncpgOrders}


def spread_orders(count: int, seed: int) -> list[list[OrderLineRequest]]:
    """Two lines of two different random dishes each; the same list for every driver."""
    rng = random.Random(seed)
    ids = [item.id for item in DEMO_MENU]
    return [
        [OrderLineRequest(item_id=item_id, quantity=1) for item_id in rng.sample(ids, 2)]
        for _ in range(count)
    ]


async def timed(run: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def measure(orders: Orders, args: argparse.Namespace, seed: int) -> dict[str, float]:
    sequential = spread_orders(args.orders, seed)
    latencies = []
    for lines in sequential:
        started = time.perf_counter()
        await orders.place(lines)
        latencies.append((time.perf_counter() - started) * 1000)
    spread = spread_orders(args.concurrent, seed + 1)
    hot = [[OrderLineRequest(item_id=DEMO_MENU[0].id, quantity=1)]] * args.concurrent
    spread_s = await timed(lambda: gather_all(orders, spread))
    hot_s = await timed(lambda: gather_all(orders, hot))
    return {
        "seq_p50_ms": percentile(latencies, 50),
        "seq_p99_ms": percentile(latencies, 99),
        "concurrent_orders_per_s": args.concurrent / spread_s,
        "hot_item_orders_per_s": args.concurrent / hot_s,
    }


async def gather_all(orders: Orders, batch: Sequence[Sequence[OrderLineRequest]]) -> None:
    await asyncio.gather(*(orders.place(lines) for lines in batch))


async def prepare_database(url: str, *, notify: bool) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.SCHEMA)
        if not notify:
            await conn.execute("DROP TRIGGER outbox_notify ON outbox")
        for position, item in enumerate(DEMO_MENU):
            await conn.execute(
                "INSERT INTO menu_items VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (item.id, position, item.name, item.description, item.category, item.price,
                 STOCK, STOCK),
            )  # fmt: skip


async def reset(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(RESET.format(stock=STOCK).encode())
        await conn.execute("VACUUM ANALYZE")


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = LocalPostgres(durable=not args.no_fsync, preexec_fn=parent_death_signal(signal.SIGINT))
    with server:
        log(f"private PostgreSQL on port {server.port} ({server.bindir}), durable={server.durable}")
        await prepare_database(server.url, notify=not args.no_notify)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in args.drivers}
        for round_no in range(args.repeat):
            for name in args.drivers:
                await reset(server.url)
                orders = DRIVERS[name]()
                await orders.open(server.url, args.pool)
                try:
                    await measure(orders, warmup(args), seed=round_no)
                    rounds[name].append(await measure(orders, args, seed=round_no))
                finally:
                    await orders.close()
                log(f"round {round_no + 1}/{args.repeat} {name}: {rounds[name][-1]}")
    return [
        {
            "driver": name,
            "version": DRIVERS[name]().version,
            **{
                key: round(statistics.median(r[key] for r in rounds[name]), 3)
                for key in RESULT_KEYS[2:]
            },
        }
        for name in args.drivers
    ]


def warmup(args: argparse.Namespace) -> argparse.Namespace:
    """A short run first: connections, prepared statements and caches are warm for both."""
    return argparse.Namespace(**{**vars(args), "orders": 50, "concurrent": 50})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_results(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    durability = "fsync off" if args.no_fsync else "durable commits"
    notify = "no NOTIFY" if args.no_notify else "NOTIFY"
    print(
        f"order transaction, pool {args.pool}, {args.orders} sequential / {args.concurrent}"
        f" concurrent orders, median of {args.repeat} rounds, {durability}, {notify}"
    )
    header = ["driver", "seq p50 ms", "seq p99 ms", "concurrent orders/s", "hot item orders/s"]
    rows = [
        [
            f"{r['driver']} {r['version']}",
            f"{r['seq_p50_ms']:.2f}",
            f"{r['seq_p99_ms']:.2f}",
            f"{r['concurrent_orders_per_s']:,.0f}",
            f"{r['hot_item_orders_per_s']:,.0f}",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pg_drivers.py",
        description=(
            "Run the PostgreSQL store's order transaction with psycopg 3 and asyncpg against a "
            "private PostgreSQL (started and removed by the script): sequential latency "
            "p50/p99, concurrent throughput, and a hot-item rush. Progress on stderr, a table "
            "(or --json) on stdout."
        ),
    )
    parser.add_argument("--orders", type=int, default=1000, help="sequential orders (1000)")
    parser.add_argument(
        "--concurrent", type=int, default=1000, help="orders started at once (1000)"
    )
    parser.add_argument("--pool", type=int, default=10, help="connections per pool (10)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--drivers",
        nargs="+",
        choices=sorted(DRIVERS),
        default=["psycopg", "asyncpg"],
        help="which drivers (both)",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="run the server with fsync/synchronous_commit off"
    )
    parser.add_argument(
        "--no-notify", action="store_true", help="drop the outbox NOTIFY trigger (its cost)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = asyncio.run(run(args))
    except PostgresNotFound as exc:
        print(f"pg_drivers.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"settings": vars(args), "results": results}))
    else:
        print_results(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
