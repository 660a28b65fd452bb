"""NAIVE order endpoint: the negative control of the oversell benchmark. Never use this.

It places orders the way many first versions do: read the stock, then write
``stock = old - quantity`` in a separate statement, with no transaction around
the two, and insert the order afterwards. Between the read and the write other
requests (in this process and in the other worker processes) read the same old
value, so several buyers get the "last" unit. It runs on the very same schema
and database as the real store (SQLite: ``models/orderflow/models/store/sqlite.py``;
PostgreSQL: ``postgres_sql.py``; chosen by the scheme of ``ORDERFLOW_STORE_URL``)
and publishes
``order.created.v1`` like the real API, so ``benchmarks/oversell.py --naive``
measures it with the same counters. The only difference is the missing
transaction, which is the point.

Each SQL statement runs on its own, in autocommit mode: on SQLite on a
per-process store thread (as the real store runs its writes, so the comparison
is fair; the real store's reads have threads of their own),
on PostgreSQL on whichever connection of a per-process asyncpg pool is free (as
the real store's pool, the same default size of 10). There is no artificial
sleep: the awaits between the statements are the ones any async data layer has.

    python benchmarks/naive_api.py --port 8123 --workers 2   # env: ORDERFLOW_STORE_URL, _REDIS_URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic.worker.loader import AppLoader

_local: dict[str, Any] = {}
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> str:
    from orderflow.models.store.sqlite import sqlite_path_from_url

    return sqlite_path_from_url(url)


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def _connection() -> sqlite3.Connection:
    """One autocommit connection, used only on this process's store thread."""
    conn: sqlite3.Connection | None = _local.get("conn")
    if conn is None:
        conn = sqlite3.connect(
            sqlite_path(os.environ["ORDERFLOW_STORE_URL"]), timeout=30.0, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        _local["conn"] = conn
    return conn


def dollar_placeholders(statement: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (no statement here quotes a ``?``)."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


async def sql(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own, autocommitted (no transaction around several)."""
    pool = _local.get("pool")
    if pool is not None:  # PostgreSQL: any free pooled connection, one statement
        rows = await pool.fetch(dollar_placeholders(statement), *params)
        return [tuple(row) for row in rows]
    executor: ThreadPoolExecutor = _local["executor"]

    def run() -> list[tuple[Any, ...]]:
        return _connection().execute(statement, params).fetchall()

    return await asyncio.get_running_loop().run_in_executor(executor, run)


async def open_database() -> None:
    url = os.environ["ORDERFLOW_STORE_URL"]
    if is_postgres(url):
        import asyncpg

        _local["pool"] = await asyncpg.create_pool(url, min_size=1, max_size=10)
    else:
        _local["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="naive-store")


async def close_database() -> None:
    pool = _local.pop("pool", None)
    if pool is not None:
        await pool.close()


def create_app() -> Sanic:
    app = Sanic("orderflow_naive_control")
    app.config.MOTD = False

    @app.before_server_start
    async def setup(app: Sanic) -> None:
        import redis.asyncio as aioredis

        await open_database()
        # A blocking pool: requests wait for a free connection instead of failing with
        # "Too many connections" (redis-py's default pool is capped at 100 and raises).
        pool = aioredis.BlockingConnectionPool.from_url(
            os.environ["ORDERFLOW_REDIS_URL"], max_connections=50, timeout=60
        )
        app.ctx.redis = aioredis.Redis(connection_pool=pool)

    @app.after_server_stop
    async def teardown(app: Sanic) -> None:
        await app.ctx.redis.aclose()
        await close_database()

    @app.get("/readyz")
    async def readyz(request: Request) -> HTTPResponse:
        await sql("SELECT 1")
        await request.app.ctx.redis.ping()
        return json_response({"status": "ready", "mode": "NAIVE"})

    @app.post("/api/v1/orders")
    async def place_order(request: Request) -> HTTPResponse:
        body = request.json or {}
        line = body["lines"][0]
        item_id, quantity = str(line["item_id"]), int(line["quantity"])
        rows = await sql("SELECT name, price, stock FROM menu_items WHERE id = ?", (item_id,))
        if not rows:
            return json_response({"title": "unknown item"}, status=404)
        name, price, stock = rows[0]
        if stock < quantity:
            return json_response({"title": "out of stock", "available": stock}, status=409)
        # THE BUG UNDER DEMONSTRATION: write back what we read, minus one, no transaction.
        await sql("UPDATE menu_items SET stock = ? WHERE id = ?", (stock - quantity, item_id))
        order = await insert_order(item_id, name, price, quantity)
        await publish_created(request.app.ctx.redis, order)
        return json_response(order, status=201)

    return app


async def insert_order(item_id: str, name: str, price: int, quantity: int) -> dict[str, Any]:
    from orderflow.models.documents import order_status_rank, utc_now

    order_id, now = uuid.uuid4().hex, utc_now()
    if "pool" in _local:  # the PostgreSQL schema also keeps the status's rank
        await sql(
            "INSERT INTO orders (id, status, status_rank, total, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (order_id, "created", order_status_rank("created"), price * quantity, now, now),
        )
    else:
        await sql(
            "INSERT INTO orders (id, status, total, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (order_id, "created", price * quantity, now, now),
        )
    await sql(
        "INSERT INTO order_lines (order_id, line_no, item_id, name, quantity, unit_price)"
        " VALUES (?, 0, ?, ?, ?, ?)",
        (order_id, item_id, name, quantity, price),
    )
    line = {"item_id": item_id, "name": name, "quantity": quantity, "unit_price": price}
    return {
        "id": order_id,
        "lines": [line],
        "total": price * quantity,
        "status": "created",
        "created_at": now,
    }


async def publish_created(redis: Any, order: dict[str, Any]) -> None:
    """Publish order.created.v1 straight to orders-stream (no outbox: also naive)."""
    from orderflow.models.events import OrderCreated
    from orderflow.runtime.envelope import Envelope

    value = OrderCreated(
        order_id=order["id"],
        lines=order["lines"],
        total=order["total"],
        created_at=order["created_at"],
    )
    envelope = Envelope.new(value, source="naive-control", key=order["id"])
    await redis.xadd("orders-stream", envelope.to_fields())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="NAIVE read-then-write order endpoint (oversell negative control only)."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps({"naive_api": "NAIVE MODE", "port": args.port}), file=sys.stderr)
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        access_log=False,
        motd=False,
        backlog=1024,
    )
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
