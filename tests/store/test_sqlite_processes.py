"""Several OS processes buying from one SQLite file: the cross-process half of the oversell proof.

The API runs as several worker processes on one SQLite file; within a process
the store serialises on its own thread, across processes only the file lock
(``BEGIN IMMEDIATE`` + busy timeout + retry) stands between buyers. This test
shows it is enough: exactly the stock sells, both lines of every order or
neither, and no "database is locked" ever reaches a caller.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from orderflow.models.documents import MenuItem
from orderflow.models.store.sqlite import SqliteStore

PROCESSES = 3
BUYERS_PER_PROCESS = 60
REPO = Path(__file__).resolve().parents[2]


async def test_processes_hammering_one_file_never_oversell(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    store = await SqliteStore.open(db)
    await store.seed_menu(
        [
            MenuItem(id="pizza", name="Pizza", category="pizza", price=1000, stock=40),
            MenuItem(id="cola", name="Cola", category="drinks", price=250, stock=25),
        ]
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store.hammer",
            str(db),
            str(BUYERS_PER_PROCESS),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert all(proc.returncode == 0 for proc in procs)
    assert [r["errors"] for r in results] == [[]] * PROCESSES  # no "database is locked"
    assert sum(r["succeeded"] for r in results) == 25  # cola is the limiting line
    assert sum(r["out_of_stock"] for r in results) == PROCESSES * BUYERS_PER_PROCESS - 25
    stock = {item.id: item.stock for item in await store.list_menu()}
    assert stock == {"pizza": 15, "cola": 0}  # no partial decrement of pizza
    assert await store.count_orders() == 25
    assert len(await store.outbox_pending(limit=1000)) == 25 * 2
    await store.close()
