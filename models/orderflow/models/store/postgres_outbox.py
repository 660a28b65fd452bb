"""The PostgreSQL store's outbox: pending rows, publish marks, pruning, and the wake-up call.

Rows are written by the transactions of :mod:`orderflow.models.store.postgres`
(``INSERT`` into ``outbox``); a statement trigger there calls ``pg_notify`` on
the ``orderflow_outbox`` channel, so the notification is sent when, and only
if, such a transaction commits. This module reads and marks the rows, and
gives the relay a way to sleep until that happens:
:meth:`OutboxNotifications.wait` ``LISTEN``\\ s on a connection of its own.

Why a connection of its own: ``LISTEN`` belongs to a session, and a pooled
connection goes back to the pool (and to other work) after each use. It is
opened on the first wait -- processes that never wait (the API) never open it
-- and reopened after it is lost. Notifications sent while it was down are
lost, which is why the relay keeps polling as a safety net and why the first
wait after (re)connecting answers ``True`` ("look now").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.postgres_pool import Connection, affected_rows
from orderflow.models.store.postgres_sql import (
    INSERT_OUTBOX,
    MARK_PUBLISHED,
    NOTIFY_CHANNEL,
    OUTBOX_PENDING,
    PRUNE_BATCH,
    PRUNE_OUTBOX,
    outbox_params,
)

log = logging.getLogger(__name__)


async def insert_outbox(conn: Connection, messages: Sequence[OutboxMessage]) -> None:
    """Write ``messages`` in the caller's transaction (the trigger notifies at commit)."""
    if messages:
        await conn.execute(INSERT_OUTBOX, *outbox_params(messages))


async def outbox_pending(
    conn: Connection, limit: int, min_age_seconds: float
) -> list[OutboxMessage]:
    rows = await conn.fetch(OUTBOX_PENDING, float(min_age_seconds), limit)
    return [
        OutboxMessage.from_json(id=row["id"], stream=row["stream"], envelope_json=row["envelope"])
        for row in rows
    ]


async def mark_published(conn: Connection, outbox_ids: Sequence[str]) -> None:
    ids = list(outbox_ids)
    if ids:
        await conn.execute(MARK_PUBLISHED, ids)


async def prune_outbox(conn: Connection, published_before_seconds: float) -> int:
    """Delete in batches of ``PRUNE_BATCH``, each its own short transaction."""
    if published_before_seconds < 0:
        raise ValueError("published_before_seconds cannot be negative")
    deleted = 0
    while True:
        batch = affected_rows(
            await conn.execute(PRUNE_OUTBOX, float(published_before_seconds), PRUNE_BATCH)
        )
        deleted += batch
        if batch < PRUNE_BATCH:
            return deleted


class OutboxNotifications:
    """``LISTEN orderflow_outbox`` on a dedicated connection, opened on first use."""

    def __init__(self, dsn: str, *, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._notified = asyncio.Event()
        self._closed = False
        self._failing = False  # logged once per outage, not on every retry

    def _on_notify(self, *_args: object) -> None:
        self._notified.set()

    async def _listen(self) -> bool:
        """(Re)open the listening connection; ``False`` (logged) if the server is not there."""
        conn = None
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if not self._failing:
                log.warning("outbox notifications: cannot listen (%s); polling only", exc)
            self._failing = True
            if conn is not None:
                conn.terminate()
            return False
        self._conn = conn
        self._failing = False
        return True

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - returns False on timeout
        """``True`` once a commit wrote outbox rows since the previous call, ``False`` after
        ``timeout`` seconds without one. ``True`` at once after (re)connecting: what was
        committed while nobody listened was not announced."""
        if self._closed:
            await asyncio.sleep(timeout)
            return False
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            if await self._listen():
                self._notified.clear()
                return True
            await asyncio.sleep(timeout)
            return False
        if not self._notified.is_set():
            try:
                await asyncio.wait_for(self._notified.wait(), timeout)
            except TimeoutError:
                return False
        self._notified.clear()
        return True

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)
