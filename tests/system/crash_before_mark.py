"""Place one order through the real use case with deferred marks, then die (SIGKILL)
after the publish and before the marks are flushed.

Used by ``test_publish_marks.py``: the order's events are on their streams, its
outbox rows are not marked (the flush interval is an hour), and the process is gone
-- the crash the deferred marks accept, which the relay must repair without
appending anything twice.

Usage: python crash_before_mark.py STORE_URL REDIS_URL ITEM_ID
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from orderflow.agents.placement import place_order
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import open_store
from orderflow.runtime import App


async def main(store_url: str, redis_url: str, item_id: str) -> None:
    store = await open_store(store_url)
    publisher = App("api", broker=redis_url)
    marks = PublishedMarks(store, interval=3600.0)
    lines = [OrderLineRequest(item_id=item_id, quantity=1)]
    result = await place_order(store, publisher, lines, marks=marks)
    assert marks.pending == len(result.outbox), "the marks were not deferred"
    sys.stdout.write(f"{result.order.id}\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process was killed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
