"""A store opened on a database of the previous release: the shared steps of the
upgrade tests (one per schema change).

Each test places an order with the current code, undoes its schema change by hand
(what the previous release created), reopens the store -- which must migrate -- and
checks the old order and a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg

from orderflow.models.store import Store
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.sqlite import SqliteStore
from tests.store.conftest import TEST_MENU

PlaceOld = Callable[[Store], Awaitable[str]]
CheckUpgraded = Callable[[Store, str], Awaitable[None]]


async def upgrade_sqlite(
    path: Path, place_old: PlaceOld, downgrade: Sequence[str], check: CheckUpgraded
) -> None:
    async with await SqliteStore.open(path) as store:
        await store.seed_menu(TEST_MENU)
        old_order = await place_old(store)
    with sqlite3.connect(path) as conn:
        for statement in downgrade:
            conn.execute(statement)
    conn.close()
    async with await SqliteStore.open(path) as store:
        await check(store, old_order)


async def upgrade_postgres(
    url: str, place_old: PlaceOld, downgrade: Sequence[str], check: CheckUpgraded
) -> None:
    store = await PostgresStore.open(url)
    try:
        await store.seed_menu(TEST_MENU)
        old_order = await place_old(store)
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        for statement in downgrade:
            await conn.execute(statement)
    finally:
        await conn.close()
    store = await PostgresStore.open(url)
    try:
        await check(store, old_order)
    finally:
        await store.close()
