"""A cancel racing the simulator ends in exactly one outcome, over many races.

All four services run in-process with zero simulator delays, and the HTTP API runs on
a real socket in front of the same store (SQLite file, then the session's private
PostgreSQL). 200 orders are placed through ``POST /api/v1/orders``; each gets a
``POST .../cancel`` fired at one of three moments while the simulator drives it:

* at once after the 201 (racing the simulator's ``confirmed``),
* after the order is seen to have moved past ``created``, plus 0 to 30 more reads
  (racing ``preparing``: with zero delays the simulator reports it the moment
  ``confirmed`` is stored),
* once it is seen ``preparing`` or later (must be refused).

Whatever the interleaving, every order ends either ``cancelled`` -- 200 answered, stock
back exactly once, no delivery, one ``order.cancelled.v1``, the simulator's pending
report dropped and counted -- or ``delivered`` with the cancel answered 409; never in
between. The stock left is exactly the initial stock minus what delivered orders took.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from orderflow.agents.services import create_service_apps
from orderflow.agents.status_cache import read_latest_status
from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM
from orderflow.models.store import Store, opened_store
from orderflow.runtime.testing import eventually
from tests.conftest import DEMO_MENU
from tests.system.conftest import all_consumed, running, stream_envelopes
from tests.web.conftest import LiveApi, make_settings, running_api

ORDERS = 200
IN_FLIGHT = 16
STOCK = 1000
LINES = {"margherita": 2, "tiramisu": 1}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def race_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orderflow.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def race_store(race_store_url: str) -> AsyncIterator[Store]:
    async with opened_store(race_store_url) as store:
        await store.seed_menu(DEMO_MENU)
        for item_id in LINES:
            await store.set_stock(item_id, STOCK)
        yield store


def dropped_after_cancel() -> float:
    total = 0.0
    for status in ("confirmed", "preparing", "out_for_delivery", "delivered"):
        value = REGISTRY.get_sample_value(
            "orderflow_status_dropped_after_cancel_total", {"reported": status}
        )
        total += value or 0.0
    return total


async def status_of(api: LiveApi, order_id: str) -> str:
    response = await api.client.get(f"/api/v1/orders/{order_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def place_and_cancel(api: LiveApi, n: int) -> tuple[str, int, dict[str, Any]]:
    """One race: place an order, fire its cancel at moment ``n % 3``; -> (id, HTTP status
    of the cancel, its body)."""
    body = {"lines": [{"item_id": item, "quantity": qty} for item, qty in LINES.items()]}
    placed = await api.client.post("/api/v1/orders", json=body)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    moment = n % 3
    if moment == 1:
        await eventually(
            lambda: _status_is_not(api, order_id, {"created"}), timeout=60, interval=0.005
        )
        # Spread the cancels over the window in which the simulator's ``preparing`` is
        # on its way: 0 to 30 more reads (each a round trip like the simulator's steps).
        for _ in range(n % 31):
            await status_of(api, order_id)
    elif moment == 2:
        await eventually(
            lambda: _status_is_not(api, order_id, {"created", "confirmed"}), timeout=60
        )
    cancel = await api.client.post(f"/api/v1/orders/{order_id}/cancel")
    return order_id, cancel.status_code, cancel.json()


async def _status_is_not(api: LiveApi, order_id: str, statuses: set[str]) -> bool:
    return await status_of(api, order_id) not in statuses


async def run_races(api: LiveApi) -> list[tuple[str, int, dict[str, Any]]]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> tuple[str, int, dict[str, Any]]:
        async with gate:
            return await place_and_cancel(api, n)

    return await asyncio.gather(*(one(n) for n in range(ORDERS)))


async def settled(
    store: Store, redis: aioredis.Redis, races: list[tuple[str, int, dict[str, Any]]]
) -> bool:
    """Every event consumed, and every order cancelled or delivered (with its delivery)."""
    if not await all_consumed(redis):
        return False
    for order_id, _, _ in races:
        order = await store.get_order(order_id)
        assert order is not None
        if order.status == "cancelled":
            continue
        if order.status != "delivered" or order.delivery is None:
            return False
        if order.delivery.status != "delivered":
            return False
    return True


async def test_cancel_racing_the_simulator_has_exactly_one_outcome(
    race_store: Store, race_store_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    store = race_store
    dropped_before = dropped_after_cancel()
    apps = create_service_apps(
        broker=redis_url, store=store, simulator_delay=(0.0, 0.0), relay_interval=0.2
    )
    async with running(apps):
        async for api in running_api(make_settings(redis_url, race_store_url)):
            races = await run_races(api)
            await eventually(
                functools.partial(settled, store, redis_client, races), timeout=240, interval=0.2
            )

    cancelled_events = {
        e.payload["order_id"]: e
        for e in await stream_envelopes(redis_client, ORDERS_STREAM)
        if e.event_type == "order.cancelled.v1"
    }
    cancelled_count = len(
        [e for e in await stream_envelopes(redis_client, ORDERS_STREAM)
         if e.event_type == "order.cancelled.v1"]
    )  # fmt: skip
    delivered_orders = {
        e.payload["order_id"] for e in await stream_envelopes(redis_client, DELIVERIES_STREAM)
    }
    outcomes = {"cancelled": 0, "delivered": 0}
    racing_preparing = {"cancelled": 0, "delivered": 0}
    for n, (order_id, answer, body) in enumerate(races):
        order = await store.get_order(order_id)
        assert order is not None
        history = [h.status for h in order.history]
        if order.status == "cancelled":
            assert answer == 200, (n, body)
            assert body["status"] == "cancelled"
            assert history in (["created", "cancelled"], ["created", "confirmed", "cancelled"])
            assert order.delivery is None
            assert order_id not in delivered_orders
            assert order_id in cancelled_events
            cached = await read_latest_status(redis_client, order_id)
            assert cached is not None and cached["status"] == "cancelled"
        else:
            assert order.status == "delivered"
            assert answer == 409, (n, body)
            assert body["type"] == "urn:orderflow:problem:order-not-cancellable"
            assert body["status_now"] in ("preparing", "out_for_delivery", "delivered")
            assert history == ["created", "confirmed", "preparing", "out_for_delivery", "delivered"]
            assert order_id not in cancelled_events
        if n % 3 == 2:
            assert order.status == "delivered"  # cancelled only after preparing was seen
        outcomes[order.status] += 1
        if n % 3 == 1:
            racing_preparing[order.status] += 1

    assert outcomes["cancelled"] + outcomes["delivered"] == ORDERS
    assert outcomes["cancelled"] > 0 and outcomes["delivered"] > 0
    assert cancelled_count == outcomes["cancelled"]  # each cancel announced exactly once
    # Every cancelled order had exactly one simulator report on its way (``confirmed``
    # if cancelled from created, ``preparing`` if from confirmed): each was dropped.
    assert dropped_after_cancel() - dropped_before == outcomes["cancelled"]
    stock = {item.id: item.stock for item in await store.list_menu()}
    for item_id, quantity in LINES.items():
        assert stock[item_id] == STOCK - quantity * outcomes["delivered"]
    print(f"outcomes over {ORDERS} races: {outcomes}; racing preparing: {racing_preparing}")
