"""The relay wakes when the store announces a commit (PostgreSQL: LISTEN/NOTIFY).

The schedule itself is checked with a hand-turned clock. Then the real thing:
an orders worker on PostgreSQL whose poll is a minute apart, and an API process
SIGKILLed right after its order committed (``crash_after_commit.py``). The
commit's ``NOTIFY`` wakes the relay, which publishes the order's events
``relay_min_age`` later -- long before any poll would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orderflow.agents.orders import create_orders_app
from orderflow.agents.outbox import RelaySchedule
from orderflow.agents.topics import ORDERS_STREAM, SIMULATE_ORDER_STREAM
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store
from orderflow.runtime.testing import eventually, run_app
from tests.system.conftest import envelopes_for_order
from tests.system.test_outbox import run_crashing_api


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_schedule_polls_and_follows_announcements() -> None:
    clock = Clock()
    schedule = RelaySchedule(interval=60.0, min_age=5.0, clock=clock)
    assert schedule.due()  # the first pass at once: whatever an earlier run left
    schedule.relayed()
    assert not schedule.due() and schedule.wait_seconds() == 60.0

    clock.now += 10  # a commit is announced: look when its rows are min_age old
    schedule.announced()
    assert schedule.wait_seconds() == 5.0
    clock.now += 2
    schedule.announced()  # a second commit before the pass
    clock.now += 3
    assert schedule.due()
    schedule.relayed()  # at 115: the commit of 112 is younger than min_age: kept
    assert schedule.wait_seconds() == pytest.approx(2.0)
    clock.now += 2
    assert schedule.due()
    schedule.relayed()  # at 117: everything announced is covered; back to the poll
    assert schedule.wait_seconds() == 60.0


def test_without_announcements_the_schedule_is_the_old_poll() -> None:
    clock = Clock()
    schedule = RelaySchedule(interval=1.0, min_age=5.0, clock=clock)
    passes = 0
    for _ in range(50):
        clock.now += schedule.wait_seconds()  # what a store that cannot announce does
        if schedule.due():
            schedule.relayed()
            passes += 1
    assert passes == 50
    assert clock.now == pytest.approx(100.0 + 49.0)


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[Store]:
    async with opened_store(postgres_url) as store:
        await store.seed_menu(DEMO_MENU)
        yield store


@pytest.mark.postgres
async def test_a_commit_left_unpublished_is_relayed_when_notified(
    pg_store: Store, postgres_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    orders_app = create_orders_app(
        broker=redis_url, store=pg_store, relay_interval=60.0, relay_min_age=0.3
    )
    async with run_app(orders_app):
        await asyncio.sleep(0.3)  # its first pass (at start) is over: the next poll is 60 s away
        order_id = await run_crashing_api(postgres_url, redis_url)
        assert len(await pg_store.outbox_pending(limit=10)) == 2  # committed, not published

        async def relayed() -> bool:
            created = await envelopes_for_order(redis_client, ORDERS_STREAM, order_id)
            return bool(created) and await pg_store.outbox_pending(limit=10) == []

        # Woken by NOTIFY: the next poll is a minute away, far past this bound.
        await eventually(relayed, timeout=20)
    assert len(await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, order_id)) == 1
