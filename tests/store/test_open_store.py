"""open_store: URL parsing, directory creation, idempotent schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orderflow.agents.settings import Settings
from orderflow.models.documents import MenuItem
from orderflow.models.store import Store, open_store
from orderflow.models.store.sqlite import SqliteStore, sqlite_path_from_url

INSERT_ORDER = (
    "INSERT INTO orders (id, status, total, created_at, updated_at, idempotency_key,"
    " request_hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def test_sqlite_urls() -> None:
    assert sqlite_path_from_url("sqlite:///.data/orderflow.db") == ".data/orderflow.db"
    assert sqlite_path_from_url("sqlite:////var/lib/of.db") == "/var/lib/of.db"
    for bad in ("sqlite://host/x.db", "sqlite://", "postgres:///x"):
        with pytest.raises(ValueError):
            sqlite_path_from_url(bad)


async def test_open_store_creates_parent_dirs_and_schema_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "orderflow.db"
    first = await open_store(f"sqlite:///{path}")
    assert isinstance(first, SqliteStore) and isinstance(first, Store)
    await first.ping()
    await first.seed_menu([MenuItem(id="soup", name="Soup", category="s", price=5, stock=2)])
    second = await open_store(f"sqlite:///{path}")  # schema again, same file, data kept
    assert [item.id for item in await second.list_menu()] == ["soup"]
    for opened in (first, second):
        await opened.close()
    assert path.exists()


async def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        await open_store("redis://localhost/0")


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "x.db")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        await store.ping()


async def test_sqlite_schema_itself_refuses_negative_stock_and_duplicates(tmp_path: Path) -> None:
    """Defence in depth: even SQL that bypasses the store cannot oversell or double up."""
    path = tmp_path / "x.db"
    store = await SqliteStore.open(path)
    await store.seed_menu([MenuItem(id="soup", name="Soup", category="s", price=5, stock=2)])
    await store.close()
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute("UPDATE menu_items SET stock = stock - 3 WHERE id = 'soup'")
        row = ("a" * 32, "created", 0, "t", "t", "key", "h")
        raw.execute(INSERT_ORDER, row)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            raw.execute(INSERT_ORDER, ("b" * 32, *row[1:]))
        raw.execute(
            "INSERT INTO deliveries VALUES (?, ?, 'waiting', 't', 't')", ("c" * 32, "a" * 32)
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            raw.execute(
                "INSERT INTO deliveries VALUES (?, ?, 'waiting', 't', 't')", ("d" * 32, "a" * 32)
            )
    finally:
        raw.close()


async def test_default_url_creates_dot_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store(Settings.model_fields["store_url"].default)
    await store.ping()
    await store.close()
    assert (tmp_path / ".data" / "orderflow.db").is_file()


async def test_the_store_url_sets_the_writer_connections_synchronous(tmp_path: Path) -> None:
    """``?synchronous=normal`` reaches SQLite's pragma on the connection that commits
    (1 = NORMAL, 2 = FULL); the default stays FULL (a commit survives a power cut)."""
    for query, level in (("", 2), ("?synchronous=normal", 1), ("?synchronous=FULL", 2)):
        store = await open_store(f"sqlite:///{tmp_path}/sync{len(query)}.db{query}")
        try:
            assert isinstance(store, SqliteStore)
            pragma = await store._write(
                lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
            )
            assert pragma == level, query
        finally:
            await store.close()
    with pytest.raises(ValueError, match="synchronous must be full or normal"):
        await open_store(f"sqlite:///{tmp_path}/sync.db?synchronous=off")
