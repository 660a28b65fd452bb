"""Place one order through the real use case, then die (SIGKILL) right after the commit.

Used by ``test_outbox.py``: the store wrapper lets the order transaction commit
(stock, order and outbox rows), prints the order id and kills this process
before ``place_order`` gets to publish -- the crash the seed design accepted as
"the event is lost", and that our outbox relay must recover from.

Usage: python crash_after_commit.py STORE_URL REDIS_URL ITEM_ID
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from orderflow.agents.placement import place_order
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import PlaceOrderResult, Store, open_store
from orderflow.runtime import App


class CrashAfterCommit:
    """A store whose ``place_order`` commits, reports the order id, then kills the process."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def place_order(self, *args: Any, **kwargs: Any) -> PlaceOrderResult:
        result = await self._store.place_order(*args, **kwargs)
        sys.stdout.write(f"{result.order.id}\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")


async def main(store_url: str, redis_url: str, item_id: str) -> None:
    store = await open_store(store_url)
    publisher = App("api", broker=redis_url)
    lines = [OrderLineRequest(item_id=item_id, quantity=1)]
    await place_order(CrashAfterCommit(store), publisher, lines)
    raise AssertionError("place_order returned: the crash did not happen")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
