"""The SQLite store's cancel transaction (the contract: :mod:`orderflow.models.store.cancellation`).

Run on the writer thread inside ``BEGIN IMMEDIATE``: the file's write lock is held
before the status is read, so no status update (nor another cancel) of any process
can come between the check and the writes. The race with the simulator's
``preparing`` is decided by which of the two transactions takes the lock first.
"""

from __future__ import annotations

import sqlite3

from orderflow.models.documents import CANCELLED, utc_now
from orderflow.models.store import sqlite_queries as queries
from orderflow.models.store.cancellation import (
    CancelEvents,
    Cancellation,
    CancelResult,
    must_cancel,
    returned_quantities,
)
from orderflow.models.store.errors import OrderNotFound
from orderflow.models.store.outbox import OutboxMessage


def cancel_order(conn: sqlite3.Connection, order_id: str, events: CancelEvents) -> CancelResult:
    row = conn.execute("SELECT status, simulate FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise OrderNotFound(order_id)
    cancelled = must_cancel(order_id, row["status"])
    outbox: list[OutboxMessage] = []
    if cancelled:
        lines = conn.execute(
            "SELECT item_id, quantity FROM order_lines WHERE order_id = ?", (order_id,)
        ).fetchall()
        returned = returned_quantities([(line["item_id"], line["quantity"]) for line in lines])
        conn.executemany(
            "UPDATE menu_items SET stock = stock + ? WHERE id = ?",
            [(quantity, item_id) for item_id, quantity in returned.items()],
        )
        at = utc_now()
        queries.set_status(conn, "orders", order_id, CANCELLED, at)
        cancellation = Cancellation(
            order_id=order_id,
            previous=row["status"],
            at=at,
            returned=returned,
            simulate=bool(row["simulate"]),
        )
        outbox = list(events(cancellation))
        queries.insert_outbox(conn, outbox)
    order = queries.load_order(conn, order_id)
    assert order is not None
    return CancelResult(order=order, cancelled=cancelled, outbox=outbox)
