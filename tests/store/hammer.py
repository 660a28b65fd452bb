"""One buyer process for the multi-process oversell test (run as a script).

Usage: python -m tests.store.hammer DB_PATH BUYERS

Opens the SQLite store, prints "ready", waits for a line on stdin (so every
process starts buying at the same moment), fires BUYERS concurrent orders of
one "pizza" + one "cola", then prints one JSON line with the outcome counts.
"""

from __future__ import annotations

import asyncio
import json
import sys

from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import OutOfStock, PlaceOrderResult
from orderflow.models.store.sqlite import SqliteStore
from tests.store.factories import order_events


async def main(db_path: str, buyers: int) -> None:
    store = await SqliteStore.open(db_path)
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
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
