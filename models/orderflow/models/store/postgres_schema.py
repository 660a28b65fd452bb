"""The PostgreSQL store's schema: created (and migrated) by every open.

Every statement is idempotent (``IF NOT EXISTS``, or a ``DO`` block that checks the
catalog first so that an open does not take ``ALTER TABLE``'s exclusive lock every
time), and the pool runs it under :data:`SCHEMA_LOCK`. Kept apart from the statements
of :mod:`~orderflow.models.store.postgres_sql` because it only grows, one migration at
a time.

``customer_name``, ``customer_address`` and ``customer_phone`` are the order's
delivery details: personal data, kept in this table and nowhere else (no event, log
line or metric carries them); all three are NULL for an order placed without them.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
"""The version this code writes in ``orderflow_schema``; a database with a newer one is
refused. Additive objects (``IF NOT EXISTS``) need no bump."""

NOTIFY_CHANNEL = "orderflow_outbox"

SCHEMA_LOCK = 7_242_001
"""``pg_advisory_xact_lock`` key held while the schema is created: concurrent
``CREATE TABLE IF NOT EXISTS`` in several processes can otherwise fail on the
catalog's unique indexes."""


def _add_to_orders(probe: str, additions: str) -> str:
    """A migration of ``orders``: ``ALTER TABLE orders <additions>`` unless the column
    ``probe`` exists. Checked first, so that an open does not take ``ALTER TABLE``'s
    exclusive lock every time."""
    return f"""DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'orders'
          AND column_name = '{probe}'
    ) THEN
        ALTER TABLE orders {additions};
    END IF;
END
$$;"""


_CUSTOMER_COLUMNS = (
    "ADD COLUMN customer_name text, ADD COLUMN customer_address text,"
    " ADD COLUMN customer_phone text"
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS orderflow_schema (
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS menu_items (
    id          text PRIMARY KEY,
    position    integer NOT NULL,
    name        text NOT NULL,
    description text NOT NULL,
    category    text NOT NULL,
    price       integer NOT NULL CHECK (price >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    seed_stock  integer NOT NULL CHECK (seed_stock >= 0)
);

CREATE TABLE IF NOT EXISTS orders (
    id              text PRIMARY KEY,
    status          text NOT NULL,
    status_rank     smallint NOT NULL CHECK (status_rank >= 0),
    total           integer NOT NULL CHECK (total >= 0),
    created_at      text NOT NULL,
    updated_at      text NOT NULL,
    idempotency_key text CONSTRAINT orders_idempotency_key UNIQUE,
    request_hash    text,
    simulate        boolean NOT NULL DEFAULT true,
    customer_name    text,
    customer_address text,
    customer_phone   text
);
-- A database from before the simulate flag: every existing order stays simulated.
{_add_to_orders("simulate", "ADD COLUMN simulate boolean NOT NULL DEFAULT true")}
-- A database from before delivery details: its orders have none (NULL), as placed.
{_add_to_orders("customer_name", _CUSTOMER_COLUMNS)}
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at);

CREATE TABLE IF NOT EXISTS order_lines (
    order_id   text NOT NULL REFERENCES orders (id),
    line_no    integer NOT NULL,
    item_id    text NOT NULL,
    name       text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price integer NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX IF NOT EXISTS order_lines_item ON order_lines (item_id);

CREATE TABLE IF NOT EXISTS order_history (
    order_id text NOT NULL REFERENCES orders (id),
    rank     smallint NOT NULL,
    status   text NOT NULL,
    at       text NOT NULL,
    PRIMARY KEY (order_id, rank)
);

CREATE TABLE IF NOT EXISTS deliveries (
    id          text PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders (id) CONSTRAINT deliveries_order UNIQUE,
    status      text NOT NULL,
    status_rank smallint NOT NULL CHECK (status_rank >= 0),
    created_at  text NOT NULL,
    updated_at  text NOT NULL
);

CREATE TABLE IF NOT EXISTS delivery_history (
    delivery_id text NOT NULL REFERENCES deliveries (id),
    rank        smallint NOT NULL,
    status      text NOT NULL,
    at          text NOT NULL,
    PRIMARY KEY (delivery_id, rank)
);

CREATE TABLE IF NOT EXISTS outbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    stream       text NOT NULL,
    envelope     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT statement_timestamp(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published ON outbox (published_at)
    WHERE published_at IS NOT NULL;

CREATE OR REPLACE FUNCTION orderflow_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    END IF;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'outbox_notify' AND tgrelid = 'outbox'::regclass
    ) THEN
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION orderflow_outbox_notify();
    END IF;
END
$$;
"""
