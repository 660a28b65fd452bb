"""The transactional outbox: no event is lost between commit and publish, none is doubled.

The crash test runs the real ``place_order`` use case in a subprocess that is
SIGKILLed right after the order transaction commits and before it publishes
(``crash_after_commit.py``). The order and its outbox rows are in the store,
nothing is on the streams; then the orders worker's relay publishes the events,
each reaches its stream exactly once and a consumer processes it once, even
when the relay and a late publisher try again.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import redis.asyncio as aioredis

from orderflow.agents.messages import order_created_messages
from orderflow.agents.orders import create_orders_app
from orderflow.agents.outbox import publish_outbox, relay_once
from orderflow.agents.placement import place_order
from orderflow.agents.topics import ORDERS_STREAM, SIMULATE_ORDER_STREAM, declare_topic
from orderflow.models.documents import OrderLineRequest
from orderflow.models.events import OrderCreated
from orderflow.models.store import Store
from orderflow.runtime import App
from orderflow.runtime.testing import eventually, run_app
from tests.system.conftest import envelopes_for_order

CRASH_SCRIPT = Path(__file__).with_name("crash_after_commit.py")
ROOT = Path(__file__).resolve().parents[2]


def probe_app(redis_url: str, seen: list[str]) -> App:
    """A consumer of orders-stream (its own group) that records each order.created it handles."""
    app = App("probe", broker=redis_url)
    orders = declare_topic(app, ORDERS_STREAM, OrderCreated)

    @app.agent(orders, group="probe-group")
    async def record(stream):
        async for value in stream:
            seen.append(value.order_id)

    return app


async def run_crashing_api(store_url: str, redis_url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASH_SCRIPT),
        store_url,
        redis_url,
        "margherita",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    return stdout.decode().strip()


async def test_killed_between_commit_and_publish_the_relay_publishes_once(
    store: Store, store_url: str, redis_url: str, redis_client: aioredis.Redis, publisher: App
) -> None:
    order_id = await run_crashing_api(store_url, redis_url)

    # Committed: the order exists and its two events wait in the outbox...
    order = await store.get_order(order_id)
    assert order is not None and order.status == "created"
    pending = await store.outbox_pending(limit=100)
    assert sorted(m.stream for m in pending) == [ORDERS_STREAM, SIMULATE_ORDER_STREAM]
    assert {m.envelope.payload["order_id"] for m in pending} == {order_id}
    # ...and nothing was published.
    assert await envelopes_for_order(redis_client, ORDERS_STREAM, order_id) == []

    seen: list[str] = []
    orders_app = create_orders_app(
        broker=redis_url, store=store, relay_interval=0.1, relay_min_age=0.0
    )
    async with run_app(probe_app(redis_url, seen)), run_app(orders_app):
        await eventually(lambda: seen == [order_id], timeout=30)

        async def relay_marked_them() -> bool:  # the mark follows the publish the probe saw
            return await store.outbox_pending(limit=100) == []

        await eventually(relay_marked_them, timeout=30)
        # A second relay pass and a late publisher of the same messages add nothing.
        assert await relay_once(publisher, store, min_age_seconds=0) == 0
        assert await publish_outbox(publisher, store, pending) == 0
        created = await envelopes_for_order(redis_client, ORDERS_STREAM, order_id)
        simulate = await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, order_id)
        assert [e.event_type for e in created] == ["order.created.v1"]
        assert [e.event_type for e in simulate] == ["order.simulate.v1"]
        assert {created[0].event_id, simulate[0].event_id} == {m.envelope.event_id for m in pending}
        # The probe is fully caught up: it processed the one entry, once.
        info = await redis_client.xinfo_groups(ORDERS_STREAM)
        probe = next(g for g in info if g["name"] == b"probe-group")
        assert probe["pending"] == 0
    assert seen == [order_id]


async def test_place_order_publishes_at_once(
    store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    result = await place_order(store, publisher, [OrderLineRequest(item_id="caprese", quantity=3)])
    assert await store.outbox_pending(limit=100) == []
    created = await envelopes_for_order(redis_client, ORDERS_STREAM, result.order.id)
    assert len(created) == 1
    assert created[0].payload["lines"] == [line.model_dump() for line in result.order.lines]
    simulate = await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, result.order.id)
    assert [e.payload["status"] for e in simulate] == ["confirmed"]
    assert simulate[0].causation_id == created[0].event_id
    assert simulate[0].correlation_id == created[0].correlation_id


async def test_publish_failure_leaves_the_order_to_the_relay(
    store: Store, redis_client: aioredis.Redis, dead_publisher: App, publisher: App
) -> None:
    """Redis unreachable after commit: the order is still placed; the relay publishes later."""
    result = await place_order(
        store, dead_publisher, [OrderLineRequest(item_id="funghi", quantity=1)]
    )
    assert result.order.status == "created"
    assert len(await store.outbox_pending(limit=100)) == 2
    assert await relay_once(publisher, store, min_age_seconds=0) == 2
    assert await store.outbox_pending(limit=100) == []
    created = await envelopes_for_order(redis_client, ORDERS_STREAM, result.order.id)
    assert len(created) == 1


async def test_republishing_an_outbox_message_appends_it_once(
    store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    order = (
        await place_order(store, publisher, [OrderLineRequest(item_id="lemonade", quantity=1)])
    ).order
    messages = order_created_messages(order, correlation_id="c0ffee")
    assert await publish_outbox(publisher, store, messages) == 2
    assert await publish_outbox(publisher, store, messages) == 0
    assert await publish_outbox(publisher, store, [*messages, *messages]) == 0
    ids = [e.event_id for e in await envelopes_for_order(redis_client, ORDERS_STREAM, order.id)]
    assert ids.count(messages[0].envelope.event_id) == 1


async def test_a_replayed_order_publishes_nothing_more(
    store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    lines = [OrderLineRequest(item_id="garlic-bread", quantity=2)]
    first = await place_order(store, publisher, lines, idempotency_key="k-1", request_hash="h")
    again = await place_order(store, publisher, lines, idempotency_key="k-1", request_hash="h")
    assert again.replayed and not first.replayed
    assert again.order.id == first.order.id
    assert again.outbox == []
    created = await envelopes_for_order(redis_client, ORDERS_STREAM, first.order.id)
    assert len(created) == 1
    assert await store.count_orders("garlic-bread") == 1
