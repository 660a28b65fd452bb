"""The PostgreSQL store's status transitions (``update_order_status``,
``update_delivery_status``): the body of one, and the lanes that let those already
queued share a ``COMMIT``.

Why grouped: the orders and delivery workers apply one status per event, and each
used to be a transaction of its own, so every status paid a ``COMMIT`` (a WAL flush)
alone, while the events that arrived together are handled concurrently (a chain per
order: :mod:`orderflow.agents.concurrently`). With ``place_order`` grouped, measured
under load (docs/benchmarks.md, "PostgreSQL group commit of orders"), these
transactions and PostgreSQL's own CPU were what was left. They now go through a lane
each (:class:`orderflow.models.store.postgres_group.GroupCommit`), with every guarantee
of the orders' lane: a savepoint each, the caller's deadline, its own error, a
deadlock re-running the group, no answer from an attempt that was rolled back.

Lock order: a status locks its row (``FOR NO KEY UPDATE``) and keeps it to the
``COMMIT``. A group of several first locks the rows of all its calls in id order (the
lane's prelude), so the groups of two replicas, which may hold the same orders in
other orders, wait for each other instead of deadlocking. Order and delivery rows are
in separate lanes: a status of one never waits for a row of the other table (a
delivery's status reads its order's ``simulate`` flag without a lock).

``?group_commit=off`` gives every status its own transaction again, as for orders.
"""

from __future__ import annotations

from collections.abc import Callable

from orderflow.models.documents import CANCELLED, utc_now
from orderflow.models.store import StatusChange, StatusTransition, TransitionEvents
from orderflow.models.store import postgres_outbox as outbox
from orderflow.models.store.errors import StoreError
from orderflow.models.store.postgres_group import GroupCommit
from orderflow.models.store.postgres_pool import Connection, PostgresPool

LOCK_ORDERS = "SELECT 1 FROM orders WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
LOCK_DELIVERIES = (
    "SELECT 1 FROM deliveries WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
)


async def lock_orders(conn: Connection, order_ids: list[str]) -> None:
    """The order-status lane's prelude: its calls' order rows, in id order."""
    await conn.execute(LOCK_ORDERS, order_ids)


async def lock_deliveries(conn: Connection, delivery_ids: list[str]) -> None:
    """The delivery-status lane's prelude: its calls' delivery rows, in id order."""
    await conn.execute(LOCK_DELIVERIES, delivery_ids)


class StatusLanes:
    """One store's two status lanes (or, off, one transaction per status)."""

    def __init__(self, pool: PostgresPool, *, enabled: bool) -> None:
        self.orders = GroupCommit(pool, enabled=enabled, prelude=lock_orders)
        self.deliveries = GroupCommit(pool, enabled=enabled, prelude=lock_deliveries)

    @property
    def commits(self) -> int:
        """``COMMIT``s of statuses that kept at least one (a group counts once)."""
        return self.orders.commits + self.deliveries.commits

    @property
    def jobs_committed(self) -> int:
        """Status calls those commits kept."""
        return self.orders.jobs_committed + self.deliveries.jobs_committed

    async def close(self) -> None:
        """Refuse new statuses; run those queued (each within its deadline)."""
        await self.orders.close()
        await self.deliveries.close()


async def update_status(
    lane: GroupCommit,
    statement: str,
    entity_id: str,
    status: str,
    rank: int,
    at: str,
    events: TransitionEvents,
    not_found: Callable[[str], StoreError],
) -> StatusChange:
    """Apply ``status`` if its rank is higher (the ``UPDATE``'s ``WHERE`` decides), with
    the transition's outbox rows, in ``lane``'s transaction (a savepoint of a group)."""

    async def body(conn: Connection) -> StatusChange:
        row = await conn.fetchrow(statement, entity_id, status, rank, at, utc_now())
        assert row is not None
        found, previous, order_id, simulate, current = row[0], row[1], row[2], row[3], row[4]
        if not found:
            raise not_found(entity_id)
        if previous is None:
            return StatusChange(changed=False, cancelled=current == CANCELLED)
        transition = StatusTransition(
            entity_id=entity_id,
            order_id=order_id,
            previous=previous,
            status=status,
            at=at,
            simulate=simulate,
        )
        messages = list(events(transition))
        await outbox.insert_outbox(conn, messages)
        return StatusChange(changed=True, outbox=messages)

    return await lane.transaction(body, keys=[entity_id])
