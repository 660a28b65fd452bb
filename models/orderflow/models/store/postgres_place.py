"""The PostgreSQL store's order transaction: ``place_order``'s body, its idempotency
replay, and the race on ``orders_idempotency_key``.

Apart from :mod:`orderflow.models.store.postgres` because it goes through group commit
(:mod:`orderflow.models.store.postgres_group`), as the statuses do
(:mod:`orderflow.models.store.postgres_status`): this module says what an order does
inside its transaction (or savepoint), the lane decides which transaction that is.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from orderflow.models.documents import Customer, Order, OrderLineRequest
from orderflow.models.store import (
    OrderEvents,
    PlaceOrderResult,
    check_stock,
    new_order,
    out_of_stock,
    wanted_quantities,
)
from orderflow.models.store import postgres_sql as sql
from orderflow.models.store.errors import IdempotencyKeyReused
from orderflow.models.store.postgres_group import GroupCommit
from orderflow.models.store.postgres_pool import Connection, PostgresPool


async def lock_items(conn: Connection, item_ids: list[str]) -> None:
    """A group's prelude: the row locks of every item its orders name, in id order."""
    await conn.execute(sql.LOCK_ITEMS, item_ids)


async def place_order(
    pool: PostgresPool,
    orders: GroupCommit,
    lines: Sequence[OrderLineRequest],
    *,
    idempotency_key: str | None,
    request_hash: str | None,
    events: OrderEvents,
    simulate: bool,
    customer: Customer | None,
) -> PlaceOrderResult:
    """One order in one transaction (shared with other orders by ``orders`` when group
    commit is on): the stock checked and decremented, the order and its outbox rows."""
    requested = list(lines)
    if not requested:
        raise ValueError("an order needs at least one line")
    wanted = wanted_quantities(requested)

    async def replay(conn: Connection) -> PlaceOrderResult | None:
        if idempotency_key is None:
            return None
        row = await conn.fetchrow(sql.FIND_BY_KEY, idempotency_key)
        if row is None:
            return None
        if row["request_hash"] != request_hash:
            raise IdempotencyKeyReused(idempotency_key)
        order = await load_order(conn, row["id"])
        assert order is not None
        return PlaceOrderResult(order=order, outbox=[], replayed=True)

    async def body(conn: Connection) -> PlaceOrderResult:
        # In a group, an earlier call of the same transaction with this key is seen here
        # (its row is not committed yet, but it is this transaction's): replayed too.
        replayed = await replay(conn)
        if replayed is not None:
            return replayed
        items = {row["id"]: row for row in await conn.fetch(sql.LOCK_ITEMS, list(wanted))}
        check_stock(wanted, items)
        order = new_order(requested, items, simulate=simulate, customer=customer)
        messages = list(events(order))
        params = sql.write_order_params(order, wanted, idempotency_key, request_hash, messages)
        if await conn.fetchval(sql.WRITE_ORDER, *params) != len(wanted):
            # Unreachable while LOCK_ITEMS holds the rows: the guard (and CHECK) is
            # there in case that ever changes. Raising rolls back the partial decrement.
            item_id = next(iter(wanted))
            raise out_of_stock(item_id, items[item_id], wanted[item_id])
        return PlaceOrderResult(order=order, outbox=messages, replayed=False)

    try:
        return await orders.transaction(body, keys=list(wanted))
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "orders_idempotency_key":
            raise
        # A concurrent request with the same key committed first: answer with its order.
        replayed = await pool.read(replay)
        if replayed is None:
            raise
        return replayed


async def load_order(conn: Connection, order_id: str) -> Order | None:
    document = await conn.fetchval(sql.LOAD_ORDER, order_id)
    return None if document is None else Order.model_validate_json(document)
