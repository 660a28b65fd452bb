"""The SQLite store's outbox statements: what the relay reads, marks and prunes.

Run on a store thread inside a transaction the store opened (reads on a reader
thread, marks and pruning on the writer).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.sqlite_queries import chunks

PRUNE_BATCH = 1000
"""Outbox rows deleted per transaction: a large backlog never holds the write lock long."""


def pending(conn: sqlite3.Connection, limit: int, min_age_seconds: float) -> list[OutboxMessage]:
    """Unpublished rows at least ``min_age_seconds`` old, oldest first."""
    rows = conn.execute(
        "SELECT id, stream, envelope FROM outbox"
        " WHERE published_at IS NULL AND created_at <= ? ORDER BY seq LIMIT ?",
        (time.time() - min_age_seconds, limit),
    ).fetchall()
    return [
        OutboxMessage.from_json(id=row["id"], stream=row["stream"], envelope_json=row["envelope"])
        for row in rows
    ]


def mark_published(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    now = time.time()
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        conn.execute(
            f"UPDATE outbox SET published_at = ? WHERE published_at IS NULL AND id IN ({marks})",
            [now, *chunk],
        )


def prune_batch(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete up to ``PRUNE_BATCH`` rows published before ``cutoff``; return how many."""
    # The partial index outbox_published finds the rows; ``published_at < ?``
    # never matches NULL, so a pending row cannot be deleted.
    cursor = conn.execute(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
        " WHERE published_at IS NOT NULL AND published_at < ? LIMIT ?)",
        (cutoff, PRUNE_BATCH),
    )
    return cursor.rowcount
