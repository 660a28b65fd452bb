"""The MongoDB store's outbox: rows written in the caller's transaction, pending rows,
publish marks, pruning, and the relay's wake-up (a poll).

Rows are inserted by the transactions of :mod:`orderflow.models.store.mongodb`
together with the change they announce, so an event exists if and only if its
change committed. ``created_at`` plus ``seq`` (the position within one
transaction) keep the order in which a transaction wrote them; the
``outbox_pending`` index (``published_at``, ``created_at``) serves both the pending
scan and the prune.

No MongoDB runs in this project's CI; the contract suite covers this module when
``ORDERFLOW_MONGO_URL`` is set.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from orderflow.models.store.mongodb_schema import Doc
from orderflow.models.store.outbox import OutboxMessage


async def insert_outbox(
    outbox: AsyncCollection[Doc], messages: Sequence[OutboxMessage], session: AsyncClientSession
) -> None:
    """Write ``messages`` in the caller's transaction (``session``), pending."""
    if not messages:
        return
    now = time.time()
    await outbox.insert_many(
        [
            {
                "_id": message.id,
                "stream": message.stream,
                "envelope": message.to_json(),
                "created_at": now,
                "seq": n,
                "published_at": None,
            }
            for n, message in enumerate(messages)
        ],
        ordered=True,
        session=session,
    )


async def outbox_pending(
    outbox: AsyncCollection[Doc], limit: int, min_age_seconds: float
) -> list[OutboxMessage]:
    cursor = (
        outbox.find({"published_at": None, "created_at": {"$lte": time.time() - min_age_seconds}})
        .sort([("created_at", 1), ("seq", 1)])
        .limit(limit)
    )
    return [
        OutboxMessage.from_json(id=doc["_id"], stream=doc["stream"], envelope_json=doc["envelope"])
        for doc in await cursor.to_list()
    ]


async def mark_published(outbox: AsyncCollection[Doc], outbox_ids: Sequence[str]) -> None:
    ids = list(outbox_ids)
    if not ids:
        return
    await outbox.update_many(
        {"_id": {"$in": ids}, "published_at": None}, {"$set": {"published_at": time.time()}}
    )


async def prune_outbox(outbox: AsyncCollection[Doc], published_before_seconds: float) -> int:
    if published_before_seconds < 0:
        raise ValueError("published_before_seconds cannot be negative")
    cutoff = time.time() - published_before_seconds
    # Pending rows hold ``published_at: None``; ``$lt`` on a number never matches
    # null (nor a missing field), ``$ne`` says so explicitly. The outbox_pending
    # index leads with published_at, so this is a range scan, not a collection scan.
    # No transaction: each delete is atomic and a partial run is just a smaller prune.
    result = await outbox.delete_many({"published_at": {"$ne": None, "$lt": cutoff}})
    return result.deleted_count


async def wait_for_outbox(timeout: float) -> bool:  # noqa: ASYNC109 - the contract
    """Polling fallback: a change stream could wake the relay, but without a server
    to run it against here it is not written; sleep, and let the relay poll."""
    await asyncio.sleep(timeout)
    return False
