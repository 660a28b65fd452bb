"""Fixtures of the hardening suite: the real app on a seeded SQLite file, with a short
store deadline, and a second connection that can hold the file's locks.

Each case here is one found by an attempt to break the running system (issue 9);
the tests keep them fixed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.sqlite import SqliteStore, sqlite_path_from_url
from tests.store.conftest import sqlite_unreadable
from tests.web.conftest import (  # noqa: F401 - fixtures used by the tests here
    LiveApi,
    api_process_factory,
    make_settings,
    running_api,
    seeded_store,
)

STORE_DEADLINE = 1.0
"""Short, so that a lock held past it is cheap to test; the property is the same at 10 s."""

ORDERS = "/api/v1/orders"


def order_body(*lines: tuple[str, int]) -> dict[str, Any]:
    return {"lines": [{"item_id": item, "quantity": qty} for item, qty in lines]}


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    return await seeded_store(tmp_path)


@pytest.fixture
async def api(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    """The app (REST role) with a store deadline of ``STORE_DEADLINE`` seconds."""
    settings = make_settings(redis_url, store_url, store_deadline_seconds=STORE_DEADLINE)
    async for live in running_api(settings):
        yield live


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store seeded with the demo menu: a SQLite file, or a database of the private
    PostgreSQL (``postgres_url``, requested only for that case)."""
    if request.param == "sqlite":
        return await seeded_store(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    async with opened_store(url) as store:
        await store.seed_menu(DEMO_MENU)
    return url


@pytest.fixture
async def any_api(redis_client: Any, redis_url: str, any_store_url: str) -> AsyncIterator[LiveApi]:
    """``api`` on each store adapter that runs here."""
    settings = make_settings(redis_url, any_store_url, store_deadline_seconds=STORE_DEADLINE)
    async for live in running_api(settings):
        yield live


@contextmanager
def file_locked(store_url: str) -> Iterator[sqlite3.Connection]:
    """Hold the SQLite file's write lock from another connection (another process would
    do the same: ``BEGIN EXCLUSIVE``), released on exit. In WAL mode readers go on."""
    other = sqlite3.connect(sqlite_path_from_url(store_url), isolation_level=None, timeout=5)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextmanager
def unreadable(store_url: str) -> Iterator[None]:
    """Shut the API's readers out too (see ``sqlite_unreadable``)."""
    with sqlite_unreadable(sqlite_path_from_url(store_url)):
        yield


async def outbox_order_ids(store: Store) -> list[str]:
    """The order id of every outbox row (published or not), read from the database."""
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        try:
            rows = [row[0] for row in await conn.fetch("SELECT envelope FROM outbox ORDER BY seq")]
        finally:
            await conn.close()
    else:
        assert isinstance(store, SqliteStore)
        raw = sqlite3.connect(store.path, timeout=5)
        try:
            rows = [row[0] for row in raw.execute("SELECT envelope FROM outbox ORDER BY seq")]
        finally:
            raw.close()
    return [json.loads(row)["payload"]["order_id"] for row in rows]
