"""The PostgreSQL store's cancel transaction (the contract:
:mod:`orderflow.models.store.cancellation`).

The race with a status update is decided by the order's row lock: :data:`LOCK_ORDER`
takes the same ``FOR NO KEY UPDATE`` lock the status update's ``old`` CTE takes, so
the two transactions run one after the other, and the second reads what the first
committed (READ COMMITTED). If the update won, the cancel reads ``preparing`` and
refuses; if the cancel won, the update's ``status_rank < $rank`` matches no row
(``cancelled`` outranks every status) and it is dropped. The ``UPDATE`` re-checks the
rank anyway (:data:`SET_CANCELLED`), as the last line of defence.

Stock rows are locked in id order, like the order transaction's ``LOCK_ITEMS``, so a
cancel and an order (or two cancels) of the same dishes queue instead of
deadlocking.
"""

from __future__ import annotations

from orderflow.models.documents import CANCELLED, Order, utc_now
from orderflow.models.store import postgres_outbox as outbox
from orderflow.models.store import postgres_sql as sql
from orderflow.models.store.cancellation import (
    CANCELLED_RANK,
    LAST_CANCELLABLE_RANK,
    CancelEvents,
    Cancellation,
    CancelResult,
    must_cancel,
    returned_quantities,
)
from orderflow.models.store.errors import OrderNotFound
from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.postgres_pool import Connection, affected_rows

LOCK_ORDER = "SELECT status, simulate FROM orders WHERE id = $1 FOR NO KEY UPDATE"
ORDER_LINES = "SELECT item_id, quantity FROM order_lines WHERE order_id = $1"
LOCK_RETURNED_ITEMS = (
    "SELECT id FROM menu_items WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
)
RETURN_STOCK = """
UPDATE menu_items AS m SET stock = m.stock + r.quantity
FROM unnest($1::text[], $2::integer[]) AS r (id, quantity)
WHERE m.id = r.id
"""
SET_CANCELLED = f"""
WITH changed AS (
    UPDATE orders SET status = '{CANCELLED}', status_rank = {CANCELLED_RANK}, updated_at = $3
    WHERE id = $1 AND status_rank <= {LAST_CANCELLABLE_RANK}
    RETURNING id
), history AS (
    INSERT INTO order_history (order_id, rank, status, at)
    SELECT id, {CANCELLED_RANK}, '{CANCELLED}', $2 FROM changed
)
SELECT count(*) FROM changed
"""


async def cancel_order(conn: Connection, order_id: str, events: CancelEvents) -> CancelResult:
    """The transaction's body (the caller opened the transaction)."""
    row = await conn.fetchrow(LOCK_ORDER, order_id)
    if row is None:
        raise OrderNotFound(order_id)
    cancelled = must_cancel(order_id, row["status"])
    messages: list[OutboxMessage] = []
    if cancelled:
        lines = await conn.fetch(ORDER_LINES, order_id)
        returned = returned_quantities([(line["item_id"], line["quantity"]) for line in lines])
        await conn.execute(LOCK_RETURNED_ITEMS, list(returned))
        status = await conn.execute(RETURN_STOCK, list(returned), list(returned.values()))
        assert affected_rows(status) == len(returned)  # menu items are never deleted
        at = utc_now()
        changed = await conn.fetchval(SET_CANCELLED, order_id, at, utc_now())
        assert changed == 1  # the row lock is held: the status read above is current
        cancellation = Cancellation(
            order_id=order_id,
            previous=row["status"],
            at=at,
            returned=returned,
            simulate=row["simulate"],
        )
        messages = list(events(cancellation))
        await outbox.insert_outbox(conn, messages)
    document = await conn.fetchval(sql.LOAD_ORDER, order_id)
    return CancelResult(
        order=Order.model_validate_json(document), cancelled=cancelled, outbox=messages
    )
