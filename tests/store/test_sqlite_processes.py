"""Several OS processes buying from one SQLite file: the cross-process half of the oversell proof.

The API runs as several worker processes on one SQLite file; within a process
the store serialises on its own thread, across processes only the file lock
(the writer ``flock``, ``BEGIN IMMEDIATE`` + busy timeout + retry) stands
between buyers. This test shows it is enough, with the writer lock and without
it (``?writer_lock=off``: SQLite's busy handler alone): exactly the stock sells,
both lines of every order or neither, and no "database is locked" ever reaches
a caller.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow.models.documents import MenuItem
from orderflow.models.store.sqlite import SqliteStore
from tests.store.hammer import hammer_processes

PROCESSES = 3
BUYERS_PER_PROCESS = 60


@pytest.mark.parametrize("query", ["", "?writer_lock=off"], ids=["writer_lock", "no_writer_lock"])
async def test_processes_hammering_one_file_never_oversell(tmp_path: Path, query: str) -> None:
    db = tmp_path / "shared.db"
    store = await SqliteStore.open(db)
    await store.seed_menu(
        [
            MenuItem(id="pizza", name="Pizza", category="pizza", price=1000, stock=40),
            MenuItem(id="cola", name="Cola", category="drinks", price=250, stock=25),
        ]
    )
    results = await hammer_processes(f"sqlite:///{db}{query}", PROCESSES, BUYERS_PER_PROCESS)
    assert [r["errors"] for r in results] == [[]] * PROCESSES  # no "database is locked"
    assert sum(r["succeeded"] for r in results) == 25  # cola is the limiting line
    assert sum(r["out_of_stock"] for r in results) == PROCESSES * BUYERS_PER_PROCESS - 25
    stock = {item.id: item.stock for item in await store.list_menu()}
    assert stock == {"pizza": 15, "cola": 0}  # no partial decrement of pizza
    assert await store.count_orders() == 25
    assert len(await store.outbox_pending(limit=1000)) == 25 * 2
    await store.close()
