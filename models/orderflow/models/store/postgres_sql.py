"""The PostgreSQL store's schema and statements, written once for every driver.

Statements use PostgreSQL's own ``$n`` placeholders, so the adapter (psycopg's
raw cursor) and the driver benchmark (``benchmarks/pg_drivers.py``, which runs
the order transaction with psycopg and asyncpg side by side) send the very same
text. Every array parameter carries an explicit cast, so no driver has to guess
a type.

Why the statements look the way they do:

* **The order** is two statements between ``BEGIN`` and ``COMMIT`` (three with an
  idempotency key: :data:`FIND_BY_KEY` first), :data:`LOCK_ITEMS` and
  :data:`WRITE_ORDER`. ``LOCK_ITEMS`` takes the row locks of every ordered item *in id order* (two
  multi-item orders can never deadlock) and reads the stock the error messages
  need; ``WRITE_ORDER`` then does everything else in one statement of
  data-modifying CTEs: the guarded decrement (``stock >= quantity`` in the
  ``WHERE``; it returns how many items it decremented and the adapter rolls
  back unless it is all of them), the order, its lines, its history and its
  outbox rows. ``CHECK (stock >= 0)`` stays the last line of defence.
* **Statuses** are monotonic in the ``UPDATE``'s ``WHERE`` (``status_rank <
  $rank``): a stale or repeated status matches no row. The CTE ``old`` locks
  the row first (``FOR NO KEY UPDATE``: it does not block the foreign-key checks of
  inserts that reference the row), so under concurrent updates ``previous`` is
  the status actually replaced, and the ``UPDATE`` re-checks the rank on the
  newest row version (READ COMMITTED re-evaluation). The history row is keyed
  by the rank: ranks only grow, so it is also the order of application.
* **The outbox** wakes relays through ``LISTEN/NOTIFY``: a statement trigger on
  ``outbox`` calls ``pg_notify`` when an ``INSERT`` added rows, so *every*
  transaction that writes outbox rows notifies, at its commit, whoever wrote it.
  Its times are the server's clock (``statement_timestamp()``), so relays on
  several hosts agree on a row's age.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orderflow.models.documents import Order, order_status_rank
from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.postgres_schema import (
    NOTIFY_CHANNEL,
    SCHEMA,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
)

__all__ = ["NOTIFY_CHANNEL", "SCHEMA", "SCHEMA_LOCK", "SCHEMA_VERSION"]
"""The schema lives in :mod:`~orderflow.models.store.postgres_schema`; named here too so
that ``sql.SCHEMA`` keeps working for the pool and the driver benchmark."""

# ------------------------------------------------------------------ orders

FIND_BY_KEY = "SELECT id, request_hash FROM orders WHERE idempotency_key = $1"

LOCK_ITEMS = """
SELECT id, name, price, stock FROM menu_items
WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE
"""

WRITE_ORDER = """
WITH decremented AS (
    UPDATE menu_items AS m SET stock = m.stock - w.quantity
    FROM unnest($1::text[], $2::integer[]) AS w (id, quantity)
    WHERE m.id = w.id AND m.stock >= w.quantity
    RETURNING m.id
), new_order AS (
    INSERT INTO orders (id, status, status_rank, total, created_at, updated_at,
                        idempotency_key, request_hash, simulate,
                        customer_name, customer_address, customer_phone)
    VALUES ($3, $4, $5, $6, $7, $7, $8, $9, $17::boolean, $18::text, $19::text, $20::text)
), lines AS (
    INSERT INTO order_lines (order_id, line_no, item_id, name, quantity, unit_price)
    SELECT $3, l.n - 1, l.item_id, l.name, l.quantity, l.unit_price
    FROM unnest($10::text[], $11::text[], $12::integer[], $13::integer[])
        WITH ORDINALITY AS l (item_id, name, quantity, unit_price, n)
), history AS (
    INSERT INTO order_history (order_id, rank, status, at) VALUES ($3, $5, $4, $7)
), outbox_rows AS (
    INSERT INTO outbox (id, stream, envelope)
    SELECT o.id, o.stream, o.envelope
    FROM unnest($14::text[], $15::text[], $16::text[])
        WITH ORDINALITY AS o (id, stream, envelope, n)
    ORDER BY o.n
)
SELECT count(*) FROM decremented
"""


def write_order_params(
    order: Order,
    wanted: Mapping[str, int],
    idempotency_key: str | None,
    request_hash: str | None,
    outbox: Sequence[OutboxMessage],
) -> tuple[object, ...]:
    """The parameters of :data:`WRITE_ORDER` (kept beside it so they cannot drift)."""
    return (
        list(wanted),
        list(wanted.values()),
        order.id,
        order.status,
        order_status_rank(order.status),
        order.total,
        order.created_at,
        idempotency_key,
        request_hash,
        [line.item_id for line in order.lines],
        [line.name for line in order.lines],
        [line.quantity for line in order.lines],
        [line.unit_price for line in order.lines],
        *outbox_params(outbox),
        order.simulate,
        *customer_params(order),
    )


def customer_params(order: Order) -> tuple[str | None, str | None, str | None]:
    """The order's name, address and phone columns (all NULL without a customer)."""
    customer = order.customer
    if customer is None:
        return (None, None, None)
    return (customer.name, customer.address, customer.phone)


_HISTORY_JSON = (
    "json_build_object('status', {alias}.status, 'at', {alias}.at) ORDER BY {alias}.rank"
)

_ORDER_JSON = f"""
SELECT json_build_object(
    'id', o.id, 'status', o.status, 'total', o.total, 'simulate', o.simulate,
    'created_at', o.created_at, 'updated_at', o.updated_at,
    'customer', CASE WHEN o.customer_name IS NOT NULL THEN json_build_object(
        'name', o.customer_name, 'address', o.customer_address, 'phone', o.customer_phone) END,
    'lines', (SELECT json_agg(json_build_object('item_id', l.item_id, 'name', l.name,
                                                'quantity', l.quantity, 'unit_price', l.unit_price)
                              ORDER BY l.line_no)
              FROM order_lines AS l WHERE l.order_id = o.id),
    'history', (SELECT json_agg({_HISTORY_JSON.format(alias="h")})
                FROM order_history AS h WHERE h.order_id = o.id),
    'delivery', (SELECT json_build_object(
                     'id', d.id, 'order_id', d.order_id, 'status', d.status,
                     'created_at', d.created_at, 'updated_at', d.updated_at,
                     'history', (SELECT json_agg({_HISTORY_JSON.format(alias="dh")})
                                 FROM delivery_history AS dh WHERE dh.delivery_id = d.id))
                 FROM deliveries AS d WHERE d.order_id = o.id)
)::text
"""

LOAD_ORDER = _ORDER_JSON + "FROM orders AS o WHERE o.id = $1"
"""The whole order, delivery included, as one JSON document (one round trip, one snapshot)."""

RECENT_ORDERS = _ORDER_JSON + "FROM orders AS o ORDER BY o.created_at DESC, o.id DESC LIMIT $1"
"""The ``$1`` newest orders as :data:`LOAD_ORDER` documents, newest first, in one statement."""


def _update_status(table: str, history: str, key: str, order_id: str, simulate: str) -> str:
    """-> (found, previous, order_id, simulate, current): ``previous``, ``order_id`` and
    ``simulate`` are NULL when stale or repeated; ``simulate`` is the order's flag;
    ``current`` the status the row had (``cancelled``: the update was dropped).

    Parameters: ``$1`` id, ``$2`` status, ``$3`` its rank, ``$4`` when it happened,
    ``$5`` now (``updated_at``). One statement for orders and deliveries alike.
    """
    return f"""
WITH old AS (
    SELECT id, status FROM {table} WHERE id = $1 FOR NO KEY UPDATE
), changed AS (
    UPDATE {table} SET status = $2, status_rank = $3, updated_at = $5
    FROM old WHERE {table}.id = old.id AND {table}.status_rank < $3
    RETURNING old.status AS previous, {order_id} AS order_id, {simulate} AS simulate
), history AS (
    INSERT INTO {history} ({key}, rank, status, at) SELECT $1, $3, $2, $4 FROM changed
)
SELECT EXISTS (SELECT 1 FROM old), (SELECT previous FROM changed),
       (SELECT order_id FROM changed), (SELECT simulate FROM changed),
       (SELECT status FROM old)
"""


UPDATE_ORDER_STATUS = _update_status(
    "orders", "order_history", "order_id", "orders.id", "orders.simulate"
)
UPDATE_DELIVERY_STATUS = _update_status(
    "deliveries",
    "delivery_history",
    "delivery_id",
    "deliveries.order_id",
    "(SELECT o.simulate FROM orders AS o WHERE o.id = deliveries.order_id)",
)

COUNT_ORDERS = "SELECT count(*) FROM orders"
COUNT_ORDERS_OF_ITEM = "SELECT count(DISTINCT order_id) FROM order_lines WHERE item_id = $1"

# -------------------------------------------------------------- deliveries

FIND_DELIVERY_OF_ORDER = "SELECT id FROM deliveries WHERE order_id = $1"
ORDER_RECIPIENT = """
SELECT CASE WHEN customer_name IS NOT NULL THEN json_build_object(
    'name', customer_name, 'address', customer_address, 'phone', customer_phone)::text END
FROM orders WHERE id = $1
"""
"""-> one row (the customer as JSON, NULL without one) if the order exists, else none."""

INSERT_DELIVERY = """
WITH inserted AS (
    INSERT INTO deliveries (id, order_id, status, status_rank, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $5)
    ON CONFLICT ON CONSTRAINT deliveries_order DO NOTHING
    RETURNING id
), history AS (
    INSERT INTO delivery_history (delivery_id, rank, status, at)
    SELECT id, $4, $3, $5 FROM inserted
)
SELECT count(*) FROM inserted
"""
"""-> 1, or 0 when a concurrent call created the order's delivery first (it waited for it)."""

LOAD_DELIVERY = f"""
SELECT json_build_object(
    'id', d.id, 'order_id', d.order_id, 'status', d.status,
    'created_at', d.created_at, 'updated_at', d.updated_at,
    'history', (SELECT json_agg({_HISTORY_JSON.format(alias="dh")})
                FROM delivery_history AS dh WHERE dh.delivery_id = d.id)
)::text
FROM deliveries AS d WHERE d.id = $1
"""

# ---------------------------------------------------------------- outbox

INSERT_OUTBOX = """
INSERT INTO outbox (id, stream, envelope)
SELECT o.id, o.stream, o.envelope
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS o (id, stream, envelope, n)
ORDER BY o.n
"""


def outbox_params(messages: Sequence[OutboxMessage]) -> tuple[list[str], list[str], list[str]]:
    """Ids, streams and envelopes of ``messages``, as :data:`INSERT_OUTBOX` takes them."""
    return (
        [message.id for message in messages],
        [message.stream for message in messages],
        [message.to_json() for message in messages],
    )


OUTBOX_PENDING = """
SELECT id, stream, envelope FROM outbox
WHERE published_at IS NULL
  AND created_at <= statement_timestamp() - make_interval(secs => $1)
ORDER BY seq LIMIT $2
"""

MARK_PUBLISHED = """
UPDATE outbox SET published_at = statement_timestamp()
WHERE published_at IS NULL AND id = ANY($1::text[])
"""

PRUNE_BATCH = 1000
"""Rows deleted per statement: a large backlog is pruned in short transactions."""

PRUNE_OUTBOX = """
DELETE FROM outbox WHERE seq IN (
    SELECT seq FROM outbox
    WHERE published_at IS NOT NULL
      AND published_at < statement_timestamp() - make_interval(secs => $1)
    LIMIT $2
)
"""
"""``published_at < ...`` never matches NULL: a pending row cannot be deleted."""

# ------------------------------------------------------------------ menu

NEXT_POSITION = "SELECT COALESCE(max(position) + 1, 0) FROM menu_items"
SEED_ITEM = """
INSERT INTO menu_items (id, position, name, description, category, price, stock, seed_stock)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
ON CONFLICT (id) DO NOTHING
"""
SEED_LOCK = 7_242_002
"""``pg_advisory_xact_lock`` key of ``seed_menu``: two seeders number positions in turn."""

LIST_MENU = """
SELECT id, name, description, category, price, stock FROM menu_items ORDER BY position, id
"""
SET_STOCK = "UPDATE menu_items SET stock = $2 WHERE id = $1"
REFILL_TO_SEED = "UPDATE menu_items SET stock = seed_stock"
REFILL_TO = "UPDATE menu_items SET stock = $1"
