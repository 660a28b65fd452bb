"""The SQLite store's status-update transactions: an order's, a delivery's.

Run on the writer thread inside ``BEGIN IMMEDIATE`` (alone, or in a savepoint of a
group commit): the write lock is held before the current status is read, so a
stale or repeated status is recognised (and changes nothing) even when another
process moves the same order at the same time.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from orderflow.models.documents import CANCELLED, delivery_status_rank, order_status_rank
from orderflow.models.store import StatusChange, StatusTransition, TransitionEvents
from orderflow.models.store import sqlite_queries as queries
from orderflow.models.store.errors import DeliveryNotFound, OrderNotFound


def update_order_status(
    conn: sqlite3.Connection,
    order_id: str,
    rank: int,
    status: str,
    at: str,
    events: TransitionEvents,
) -> StatusChange:
    """Move the order to ``status`` (lifecycle ``rank``) unless it is there or past it."""
    row = conn.execute("SELECT status, simulate FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise OrderNotFound(order_id)
    if rank <= order_status_rank(row["status"]):
        return StatusChange(changed=False, cancelled=row["status"] == CANCELLED)
    return _apply(conn, "orders", order_id, order_id, row, status, at, events)


def update_delivery_status(
    conn: sqlite3.Connection,
    delivery_id: str,
    rank: int,
    status: str,
    at: str,
    events: TransitionEvents,
) -> StatusChange:
    """Move the delivery to ``status`` (``rank``) unless it is there or past it."""
    row = conn.execute(
        "SELECT d.order_id, d.status, o.simulate FROM deliveries AS d"
        " JOIN orders AS o ON o.id = d.order_id WHERE d.id = ?",
        (delivery_id,),
    ).fetchone()
    if row is None:
        raise DeliveryNotFound(delivery_id)
    if rank <= delivery_status_rank(row["status"]):
        return StatusChange(changed=False)
    return _apply(conn, "deliveries", delivery_id, row["order_id"], row, status, at, events)


def _apply(
    conn: sqlite3.Connection,
    table: Literal["orders", "deliveries"],
    entity_id: str,
    order_id: str,
    row: sqlite3.Row,
    status: str,
    at: str,
    events: TransitionEvents,
) -> StatusChange:
    """Write the new status of an order or a delivery (``row``: its ``status`` and the
    order's ``simulate`` as read in this transaction) with its events in the outbox."""
    queries.set_status(conn, table, entity_id, status, at)
    transition = StatusTransition(
        entity_id=entity_id,
        order_id=order_id,
        previous=row["status"],
        status=status,
        at=at,
        simulate=bool(row["simulate"]),
    )
    outbox = list(events(transition))
    queries.insert_outbox(conn, outbox)
    return StatusChange(changed=True, outbox=outbox)
