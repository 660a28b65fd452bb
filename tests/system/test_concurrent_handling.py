"""The agents that write the store take the events already arrived together
(:mod:`orderflow.agents.concurrently`): orders handled concurrently, each order's
statuses in stream order, one publish round trip for the list, a failing event failed
alone. Real Valkey, real SQLite and PostgreSQL; the orders worker's own app."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from orderflow.agents.orders import create_orders_app
from orderflow.agents.placement import place_order
from orderflow.agents.topics import ORDER_STATUS_STREAM, ORDERS_STREAM, declare_topic, topic_streams
from orderflow.models.documents import OrderLineRequest, OrderStatus
from orderflow.models.events import OrderStatusReported
from orderflow.models.store import StatusChange, Store, TransitionEvents, no_events
from orderflow.runtime import App, Envelope, Topic
from orderflow.runtime.testing import eventually
from tests.system.conftest import envelopes_for_order, running

MISSING_ORDER = "0" * 32  # a well-formed order id no order has


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both stores the workers run on: SQLite (one writer thread, where the writes of a
    list queue up) and PostgreSQL (a pool, where they run in parallel)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orderflow.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


LIFECYCLE: list[OrderStatus] = ["confirmed", "preparing", "out_for_delivery", "delivered"]


HOLD_SECONDS = {"confirmed": 0.02, "preparing": 0.015, "out_for_delivery": 0.01, "delivered": 0.005}
"""How long a status waits before its write: an earlier status longer, so statuses of one
order handled at once would commit out of order (the later one first)."""


class InFlightCounter:
    """The store, with a count of ``update_order_status`` calls in flight at once (the
    most seen), so a test can tell the writes of different orders overlapped; each call
    waits :data:`HOLD_SECONDS` of its status first."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.in_flight = 0
        self.peak = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(HOLD_SECONDS[status])
            return await self._store.update_order_status(order_id, status, at, events)
        finally:
            self.in_flight -= 1


def count_publishes(app: App) -> list[int]:
    """Record how many envelopes each ``send_envelopes`` round trip of ``app`` carried
    (the real call runs: nothing is faked)."""
    calls: list[int] = []
    real = app.send_envelopes

    async def counted(items: Sequence[tuple[Topic[Any], Envelope]], *, once: bool = False) -> Any:
        calls.append(len(items))
        return await real(items, once=once)

    app.send_envelopes = counted  # type: ignore[method-assign]
    return calls


async def place_orders(store: Store, publisher: App, count: int) -> list[str]:
    lines = [OrderLineRequest(item_id="diavola", quantity=1)]
    return [
        (await place_order(store, publisher, lines, simulate=False)).order.id for _ in range(count)
    ]


async def report_interleaved(publisher: App, order_ids: list[str]) -> None:
    """Every order's four statuses, orders interleaved: o1 confirmed, o2 confirmed, ...,
    o1 preparing, ... -- on order-status-stream before the orders worker starts."""
    topic = declare_topic(publisher, ORDER_STATUS_STREAM, OrderStatusReported)
    for step, status in enumerate(LIFECYCLE):
        for order_id in order_ids:
            at = f"2026-01-01T00:00:0{step}Z"
            await topic.send(value=OrderStatusReported(order_id=order_id, status=status, at=at),
                             key=order_id)  # fmt: skip


async def history(store: Store, order_id: str) -> list[str]:
    order = await store.get_order(order_id)
    assert order is not None
    return [change.status for change in order.history]


async def test_each_order_in_stream_order_while_orders_interleave_and_one_publish(
    redis_url: str, redis_client: aioredis.Redis, store: Store, publisher: App
) -> None:
    order_ids = await place_orders(store, publisher, 5)
    await report_interleaved(publisher, order_ids)
    counting = InFlightCounter(store)
    app = create_orders_app(broker=redis_url, store=counting, relay_min_age=600)
    publishes = count_publishes(app)

    async def all_delivered() -> bool:
        return all([(await history(store, o))[-1] == "delivered" for o in order_ids])

    async with running([app]):
        await eventually(all_delivered, timeout=30)
    for order_id in order_ids:
        assert await history(store, order_id) == ["created", *LIFECYCLE]
        updates = await envelopes_for_order(
            redis_client, ORDERS_STREAM, order_id, "order.status_updated.v1"
        )
        assert [u.payload["status"] for u in updates] == LIFECYCLE
    assert counting.peak > 1  # the writes of different orders were in flight together
    # The 20 reports had all arrived: one list, one publish round trip, per partition.
    assert sum(publishes) == 20
    assert 1 <= len(publishes) <= len(topic_streams(ORDER_STATUS_STREAM))


async def test_a_report_that_fails_is_dead_lettered_alone_and_the_others_apply(
    redis_url: str, redis_client: aioredis.Redis, store: Store, publisher: App
) -> None:
    order_ids = await place_orders(store, publisher, 3)
    topic = declare_topic(publisher, ORDER_STATUS_STREAM, OrderStatusReported)
    for order_id in [order_ids[0], MISSING_ORDER, *order_ids[1:]]:
        report = OrderStatusReported(
            order_id=order_id, status="confirmed", at="2026-01-01T00:00:00Z"
        )
        await topic.send(value=report, key=order_id)
    app = create_orders_app(broker=redis_url, store=store, relay_min_age=600)
    app.max_deliveries, app.retry_base, app.retry_cap = 2, 0.02, 0.05

    async def confirmed() -> bool:
        return all([(await history(store, o)) == ["created", "confirmed"] for o in order_ids])

    async def dead_lettered() -> bool:
        return await redis_client.xlen("dead-letters") == 1

    async with running([app]):
        await eventually(confirmed, timeout=30)
        await eventually(dead_lettered, timeout=30)
    [(_, letter)] = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis_client.xrange("dead-letters")
    )
    assert letter[b"error_type"] == b"OrderNotFound"
    assert MISSING_ORDER.encode() in letter[b"raw"]
    for order_id in order_ids:  # applied once each: one update announced per order
        updates = await envelopes_for_order(
            redis_client, ORDERS_STREAM, order_id, "order.status_updated.v1"
        )
        assert [u.payload["status"] for u in updates] == ["confirmed"]
