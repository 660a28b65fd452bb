"""Statements of the SQLite store that several operations share: loading an order or a
delivery with its history, recording a status change, writing outbox rows.

Plain functions on a connection, run on a store thread inside a transaction
that the caller (:mod:`orderflow.models.store.sqlite`) opened.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from orderflow.models.documents import (
    Customer,
    Delivery,
    DeliveryStatusChange,
    MenuItem,
    Order,
    OrderLine,
    OrderLineRequest,
    OrderStatusChange,
    utc_now,
)
from orderflow.models.store import (
    DeliveryEvents,
    DeliveryResult,
    OrderEvents,
    PlaceOrderResult,
    check_stock,
    new_delivery,
    new_order,
    out_of_stock,
)
from orderflow.models.store.errors import IdempotencyKeyReused, OrderNotFound
from orderflow.models.store.outbox import OutboxMessage

MAX_SQL_VARIABLES = 500


def chunks(values: Sequence[str], size: int = MAX_SQL_VARIABLES) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_HISTORY_TABLES = {
    "orders": ("order_history", "order_id"),
    "deliveries": ("delivery_history", "delivery_id"),
}


def set_status(
    conn: sqlite3.Connection,
    table: Literal["orders", "deliveries"],
    entity_id: str,
    status: str,
    at: str,
) -> None:
    """Set the row's status and append it to the row's history (next ``seq``)."""
    history, key = _HISTORY_TABLES[table]
    conn.execute(
        f"UPDATE {table} SET status = ?, updated_at = ? WHERE id = ?",
        (status, utc_now(), entity_id),
    )
    conn.execute(
        f"INSERT INTO {history} ({key}, seq, status, at) VALUES"
        f" (?, (SELECT COUNT(*) FROM {history} WHERE {key} = ?), ?, ?)",
        (entity_id, entity_id, status, at),
    )


def insert_outbox(conn: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    if not messages:
        return
    now = time.time()
    conn.executemany(
        "INSERT INTO outbox (id, stream, envelope, created_at) VALUES (?, ?, ?, ?)",
        [(message.id, message.stream, message.to_json(), now) for message in messages],
    )


def load_delivery(conn: sqlite3.Connection, column: str, value: str) -> Delivery | None:
    assert column in ("id", "order_id")
    row = conn.execute(
        f"SELECT id, order_id, status, created_at, updated_at FROM deliveries WHERE {column} = ?",
        (value,),
    ).fetchone()
    if row is None:
        return None
    history = [
        DeliveryStatusChange(status=h["status"], at=h["at"])
        for h in conn.execute(
            "SELECT status, at FROM delivery_history WHERE delivery_id = ? ORDER BY seq",
            (row["id"],),
        )
    ]
    return Delivery(
        id=row["id"],
        order_id=row["order_id"],
        status=row["status"],
        history=history,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def load_order(conn: sqlite3.Connection, order_id: str) -> Order | None:
    row = conn.execute(
        "SELECT id, status, total, created_at, updated_at, simulate,"
        " customer_name, customer_address, customer_phone FROM orders WHERE id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        return None
    lines = [
        OrderLine(
            item_id=line["item_id"],
            name=line["name"],
            quantity=line["quantity"],
            unit_price=line["unit_price"],
        )
        for line in conn.execute(
            "SELECT item_id, name, quantity, unit_price FROM order_lines"
            " WHERE order_id = ? ORDER BY line_no",
            (order_id,),
        )
    ]
    history = [
        OrderStatusChange(status=h["status"], at=h["at"])
        for h in conn.execute(
            "SELECT status, at FROM order_history WHERE order_id = ? ORDER BY seq", (order_id,)
        )
    ]
    return Order(
        id=row["id"],
        lines=lines,
        total=row["total"],
        status=row["status"],
        history=history,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivery=load_delivery(conn, "order_id", order_id),
        simulate=bool(row["simulate"]),
        customer=_customer(row),
    )


def _customer(row: sqlite3.Row) -> Customer | None:
    if row["customer_name"] is None:  # placed without one (the schema: all three or none)
        return None
    return Customer(
        name=row["customer_name"], address=row["customer_address"], phone=row["customer_phone"]
    )


def count_orders(conn: sqlite3.Connection, item_id: str | None) -> int:
    """All orders, or the orders with a line for ``item_id``."""
    if item_id is None:
        row = conn.execute("SELECT COUNT(*) FROM orders").fetchone()
    else:
        row = conn.execute(
            "SELECT COUNT(DISTINCT order_id) FROM order_lines WHERE item_id = ?", (item_id,)
        ).fetchone()
    return int(row[0])


def recent_orders(conn: sqlite3.Connection, limit: int) -> list[Order]:
    """The ``limit`` newest orders, newest first (rowid breaks a tie in ``created_at``)."""
    ids = [
        row["id"]
        for row in conn.execute(
            "SELECT id FROM orders ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        )
    ]
    orders = [load_order(conn, order_id) for order_id in ids]
    return [order for order in orders if order is not None]


def place_order(
    conn: sqlite3.Connection,
    requested: Sequence[OrderLineRequest],
    wanted: Mapping[str, int],
    idempotency_key: str | None,
    request_hash: str | None,
    events: OrderEvents,
    simulate: bool,
    customer: Customer | None,
) -> PlaceOrderResult:
    """The order transaction's body: replay a known key, or check and take the stock, insert
    the order, its lines, its history and its outbox rows."""
    if idempotency_key is not None:
        row = conn.execute(
            "SELECT id, request_hash FROM orders WHERE idempotency_key = ?",
            (idempotency_key,),
        ).fetchone()
        if row is not None:
            if row["request_hash"] != request_hash:
                raise IdempotencyKeyReused(idempotency_key)
            order = load_order(conn, row["id"])
            assert order is not None
            return PlaceOrderResult(order=order, outbox=[], replayed=True)

    marks = ",".join("?" * len(wanted))
    items = {
        row["id"]: row
        for row in conn.execute(
            f"SELECT id, name, price, stock FROM menu_items WHERE id IN ({marks})",
            list(wanted),
        )
    }
    check_stock(wanted, items)
    for item_id, quantity in wanted.items():
        # BEGIN IMMEDIATE holds the write lock, so the guard cannot fail;
        # it (and CHECK (stock >= 0)) is there in case that ever changes.
        cursor = conn.execute(
            "UPDATE menu_items SET stock = stock - ? WHERE id = ? AND stock >= ?",
            (quantity, item_id, quantity),
        )
        if cursor.rowcount != 1:
            raise out_of_stock(item_id, items[item_id], quantity)

    order = new_order(requested, items, simulate=simulate, customer=customer)
    now = order.created_at
    conn.execute(
        "INSERT INTO orders (id, status, total, created_at, updated_at, idempotency_key,"
        " request_hash, simulate, customer_name, customer_address, customer_phone)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            order.id,
            order.status,
            order.total,
            now,
            now,
            idempotency_key,
            request_hash,
            int(simulate),
            None if customer is None else customer.name,
            None if customer is None else customer.address,
            None if customer is None else customer.phone,
        ),
    )
    conn.executemany(
        "INSERT INTO order_lines (order_id, line_no, item_id, name, quantity, unit_price)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (order.id, n, line.item_id, line.name, line.quantity, line.unit_price)
            for n, line in enumerate(order.lines)
        ],
    )
    conn.execute(
        "INSERT INTO order_history (order_id, seq, status, at) VALUES (?, 0, ?, ?)",
        (order.id, order.status, now),
    )
    outbox = list(events(order))
    insert_outbox(conn, outbox)
    return PlaceOrderResult(order=order, outbox=outbox, replayed=False)


def seed_menu(conn: sqlite3.Connection, rows: Sequence[MenuItem]) -> int:
    """Insert the items that are missing, after the last position; return how many."""
    (position,) = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM menu_items").fetchone()
    inserted = 0
    for item in rows:
        cursor = conn.execute(
            # ON CONFLICT(id) only: unlike INSERT OR IGNORE it does not
            # silently skip a row that violates a CHECK constraint.
            "INSERT INTO menu_items"
            " (id, position, name, description, category, price, stock, seed_stock)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                item.id,
                position,
                item.name,
                item.description,
                item.category,
                item.price,
                item.stock,
                item.stock,
            ),
        )
        if cursor.rowcount == 1:
            inserted += 1
            position += 1
    return inserted


def create_delivery(
    conn: sqlite3.Connection, order_id: str, events: DeliveryEvents
) -> DeliveryResult:
    """The order's delivery (the existing one, or a new one with its outbox rows) and the
    order's customer, read in the same transaction: what the courier needs."""
    order = conn.execute(
        "SELECT customer_name, customer_address, customer_phone FROM orders WHERE id = ?",
        (order_id,),
    ).fetchone()
    if order is None:
        raise OrderNotFound(order_id)
    recipient = _customer(order)
    row = conn.execute("SELECT id FROM deliveries WHERE order_id = ?", (order_id,)).fetchone()
    if row is not None:
        existing = load_delivery(conn, "id", row["id"])
        assert existing is not None
        return DeliveryResult(existing, created=False, recipient=recipient)
    delivery = new_delivery(order_id)
    now = delivery.created_at
    conn.execute(
        "INSERT INTO deliveries (id, order_id, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (delivery.id, order_id, delivery.status, now, now),
    )
    conn.execute(
        "INSERT INTO delivery_history (delivery_id, seq, status, at) VALUES (?, 0, ?, ?)",
        (delivery.id, delivery.status, now),
    )
    outbox = list(events(delivery))
    insert_outbox(conn, outbox)
    return DeliveryResult(delivery, created=True, outbox=outbox, recipient=recipient)
