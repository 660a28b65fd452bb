"""One buyer process for the multi-process oversell tests (run as a script).

Usage: python -m tests.store.hammer STORE BUYERS [BUSY_TIMEOUT]

STORE is a SQLite file path or a store URL (``postgresql://...``). Opens the
store, prints "ready", waits for a line on stdin (so every process starts
buying at the same moment), fires BUYERS concurrent orders of one "pizza" +
one "cola", then prints one JSON line with the outcome counts (and, for a
SQLite file, its ``busy_retries`` and ``lock_waits``). BUSY_TIMEOUT (seconds,
SQLite file paths only) shortens SQLite's own wait for its file lock, so that a
file found locked shows up in ``busy_retries`` at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import OutOfStock, PlaceOrderResult, Store, open_store
from orderflow.models.store.sqlite import SqliteStore
from tests.store.factories import order_events


async def main(target: str, buyers: int, busy_timeout: float | None = None) -> None:
    store: Store
    if "://" in target:
        store = await open_store(target)
    elif busy_timeout is not None:
        store = await SqliteStore.open(target, busy_timeout=busy_timeout)
    else:
        store = await SqliteStore.open(target)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the start signal
    lines = [
        OrderLineRequest(item_id="pizza", quantity=1),
        OrderLineRequest(item_id="cola", quantity=1),
    ]
    outcomes = await asyncio.gather(
        *(
            store.place_order(lines, idempotency_key=None, request_hash=None, events=order_events)
            for _ in range(buyers)
        ),
        return_exceptions=True,
    )
    await store.close()
    sqlite = store if isinstance(store, SqliteStore) else None
    errors = [
        f"{type(o).__name__}: {o}"
        for o in outcomes
        if isinstance(o, BaseException) and not isinstance(o, OutOfStock)
    ]
    print(
        json.dumps(
            {
                "succeeded": sum(isinstance(o, PlaceOrderResult) for o in outcomes),
                "out_of_stock": sum(isinstance(o, OutOfStock) for o in outcomes),
                "errors": errors,
                "busy_retries": sqlite.busy_retries if sqlite else 0,
                "lock_waits": sqlite.lock_waits if sqlite else 0,
            }
        ),
        flush=True,
    )


REPO = Path(__file__).resolve().parents[2]


async def hammer_processes(
    target: str, processes: int, buyers: int, busy_timeout: float | None = None
) -> list[dict[str, Any]]:
    """Run ``processes`` buyer processes on ``target``, release them at once; their outcomes.

    Each process must exit 0; what it printed is returned (``succeeded``,
    ``out_of_stock``, ``errors``) for the caller to add up.
    """
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store.hammer",
            target,
            str(buyers),
            *([] if busy_timeout is None else [str(busy_timeout)]),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
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
    assert all(proc.returncode == 0 for proc in procs)
    return [json.loads(stdout) for stdout, _ in outputs]


if __name__ == "__main__":
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), timeout))
