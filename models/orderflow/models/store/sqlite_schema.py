"""The SQLite store's schema: its tables, its version, how it is created on open.

Kept apart from the store's operations because every connection that opens a
file runs it (idempotent, inside ``BEGIN IMMEDIATE``), and because its version
rule is the one thing older releases depend on.
"""

from __future__ import annotations

import sqlite3

from orderflow.models.store.errors import StoreUnavailable

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` this code writes; a file with a newer one is refused.

Bump it only for a change that older code cannot work with (and add the
migration to ``_create_schema``). Additive objects created with ``IF NOT
EXISTS`` -- like the ``outbox_published`` index -- need no bump: every open runs
the whole script, so an existing file gets them, and older code still opens a
file that has them.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS menu_items (
    id          TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    category    TEXT NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    seed_stock  INTEGER NOT NULL CHECK (seed_stock >= 0)
) STRICT;

CREATE TABLE IF NOT EXISTS orders (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    total           INTEGER NOT NULL CHECK (total >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT,
    simulate        INTEGER NOT NULL DEFAULT 1 CHECK (simulate IN (0, 1)),
    customer_name    TEXT,
    customer_address TEXT,
    customer_phone   TEXT
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency_key
    ON orders (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS order_lines (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    line_no    INTEGER NOT NULL,
    item_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
) STRICT;
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at);
CREATE INDEX IF NOT EXISTS order_lines_item ON order_lines (item_id);

CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq      INTEGER NOT NULL,
    status   TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
) STRICT;

CREATE TABLE IF NOT EXISTS deliveries (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id),
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_order ON deliveries (order_id);

CREATE TABLE IF NOT EXISTS delivery_history (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (delivery_id, seq)
) STRICT;

CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    stream       TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    published_at REAL
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published ON outbox (published_at)
    WHERE published_at IS NOT NULL;
"""


CUSTOMER_COLUMNS = ("customer_name", "customer_address", "customer_phone")
"""The order's delivery details (NULL when placed without them): personal data that
stays in this file; no event, log line or metric carries it."""


def create_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"database schema version {version} is newer than this code ({SCHEMA_VERSION})"
        )
    # A file from before the simulate flag: add the column (its default makes every
    # existing order simulated, as it was). Additive, so no version bump; older code
    # never names the column and its inserts get the default.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(orders)")}
    if columns and "simulate" not in columns:
        conn.execute(
            "ALTER TABLE orders ADD COLUMN simulate INTEGER NOT NULL DEFAULT 1"
            " CHECK (simulate IN (0, 1))"
        )
    # A file from before delivery details: its orders have none (NULL), as placed.
    for column in CUSTOMER_COLUMNS:
        if columns and column not in columns:
            conn.execute(f"ALTER TABLE orders ADD COLUMN {column} TEXT")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
