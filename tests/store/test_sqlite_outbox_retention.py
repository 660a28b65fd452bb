"""SQLite outbox pruning: files from before pruning existed, and backlogs larger than a batch."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from orderflow.models.store.sqlite import SCHEMA_VERSION, SqliteStore
from orderflow.models.store.sqlite_outbox import PRUNE_BATCH
from tests.store.conftest import TEST_MENU
from tests.store.factories import line, order_events


def raw_connection(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def index_names(path: Path) -> set[str]:
    raw = raw_connection(path)
    try:
        rows = raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    finally:
        raw.close()
    return {name for (name,) in rows}


async def test_a_file_from_before_pruning_opens_and_prunes(tmp_path: Path) -> None:
    """The previous release wrote the same schema without the ``outbox_published`` index."""
    path = tmp_path / "orderflow.db"
    store = await SqliteStore.open(path)
    await store.seed_menu(TEST_MENU)
    first = await store.place_order(
        [line("pizza", 1)], idempotency_key=None, request_hash=None, events=order_events
    )
    second = await store.place_order(
        [line("cola", 1)], idempotency_key=None, request_hash=None, events=order_events
    )
    await store.mark_published([m.id for m in first.outbox])
    await store.close()
    # Turn the file into one the previous release left behind: no pruning index,
    # and its published rows are two days old.
    raw = raw_connection(path)
    try:
        raw.execute("DROP INDEX outbox_published")
        raw.execute("UPDATE outbox SET published_at = published_at - 172800")
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        raw.close()
    assert "outbox_published" not in index_names(path)

    reopened = await SqliteStore.open(path)
    try:
        order = await reopened.get_order(first.order.id)
        assert order is not None and order.status == "created"
        assert await reopened.prune_outbox(published_before_seconds=86_400) == 2
        assert [m.id for m in await reopened.outbox_pending()] == [m.id for m in second.outbox]
    finally:
        await reopened.close()
    assert "outbox_published" in index_names(path)
    raw = raw_connection(path)
    try:
        # Additive change, no version bump: the previous release still opens this file.
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        plan = raw.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM outbox"
            " WHERE published_at IS NOT NULL AND published_at < ?",
            (time.time(),),
        ).fetchall()
        assert any("outbox_published" in row[-1] for row in plan), plan
    finally:
        raw.close()


async def test_a_backlog_larger_than_a_batch_is_pruned_completely(tmp_path: Path) -> None:
    path = tmp_path / "orderflow.db"
    store = await SqliteStore.open(path)
    try:
        old = time.time() - 3600
        backlog = 2 * PRUNE_BATCH + 7
        raw = raw_connection(path)
        try:
            raw.executemany(
                "INSERT INTO outbox (id, stream, envelope, created_at, published_at)"
                " VALUES (?, 's', '{}', ?, ?)",
                [(f"published-{n}", old, old) for n in range(backlog)]
                + [(f"pending-{n}", old, None) for n in range(3)],
            )
        finally:
            raw.close()
        assert await store.prune_outbox(published_before_seconds=60) == backlog
        assert await store.prune_outbox(published_before_seconds=60) == 0
        raw = raw_connection(path)
        try:
            remaining = [row[0] for row in raw.execute("SELECT id FROM outbox ORDER BY seq")]
        finally:
            raw.close()
        assert remaining == ["pending-0", "pending-1", "pending-2"]
    finally:
        await store.close()
