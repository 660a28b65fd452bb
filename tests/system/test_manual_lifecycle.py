"""End to end: an order placed with ``"simulate": false`` waits for an operator.

The four services run in-process (zero simulator delays) beside the HTTP API with
the console on, all on one Valkey and one SQLite file. A simulated order placed at
the same time is delivered; the other stays at ``created`` -- checked once every
stream is consumed, so nothing is still on its way. Then the operator moves it
through every step with ``POST /api/v1/ops/orders/{id}/advance``, and after each
step, once the system is quiet again, it is exactly one step further: the services
applied the operator's report as they apply the simulator's, and the simulator added
nothing. It ends ``delivered`` with a delivery and both full histories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.agents.manual_steps import MANUAL_STEPS
from orderflow.agents.topics import (
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    SIMULATE_ORDER_STREAM,
)
from orderflow.models.documents import Order
from orderflow.models.store import Store
from orderflow.runtime import App
from orderflow.runtime.testing import eventually
from tests.system.conftest import all_consumed, envelopes_for_order
from tests.system.test_lifecycle import DELIVERY_LIFECYCLE, ORDER_LIFECYCLE, wait_delivered
from tests.web.conftest import LiveApi, make_settings, running_api

TOKEN = "manual-lifecycle-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

WHERE_AFTER: dict[str, tuple[str, str | None]] = {
    "confirmed": ("confirmed", None),
    "preparing": ("preparing", None),
    "out_for_delivery": ("out_for_delivery", "waiting"),
    "on_the_way": ("out_for_delivery", "on_the_way"),
    "delivered": ("delivered", "delivered"),
}
"""(order status, delivery status) once a step has been applied and the system is quiet."""


@pytest.fixture
async def console(services: list[App], redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    async for live in running_api(make_settings(redis_url, store_url, operator_token=TOKEN)):
        yield live


def where(order: Order | None) -> tuple[str, str | None]:
    assert order is not None
    return order.status, None if order.delivery is None else order.delivery.status


async def quiet(redis: aioredis.Redis) -> None:
    """Every event appended so far is consumed: nothing more is on its way."""

    async def consumed() -> bool:
        return await all_consumed(redis)

    await eventually(consumed, timeout=30)


async def place(console: LiveApi, **body: Any) -> str:
    response = await console.client.post(
        "/api/v1/orders", json={"lines": [{"item_id": "margherita", "quantity": 1}], **body}
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


async def test_a_manual_order_waits_then_is_moved_to_delivered_by_hand(
    console: LiveApi, store: Store, redis_client: aioredis.Redis
) -> None:
    manual = await place(console, simulate=False)
    simulated = await place(console)
    await wait_delivered(store, simulated)
    await quiet(redis_client)
    assert where(await store.get_order(manual)) == ("created", None)
    assert await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, manual) == []

    for step in MANUAL_STEPS:
        response = await console.client.post(
            f"/api/v1/ops/orders/{manual}/advance", headers=AUTH, json={"status": step}
        )
        assert response.status_code == 202, response.text
        expected = WHERE_AFTER[step]

        async def applied(expected: tuple[str, str | None] = expected) -> bool:
            return where(await store.get_order(manual)) == expected

        await eventually(applied, timeout=30)
        await quiet(redis_client)
        assert where(await store.get_order(manual)) == expected, f"after {step}"

    order = await store.get_order(manual)
    assert order is not None and order.delivery is not None and not order.simulate
    assert [change.status for change in order.history] == ORDER_LIFECYCLE
    assert [change.status for change in order.delivery.history] == DELIVERY_LIFECYCLE
    # The services announced every step as they do for a simulated order, with the flag.
    updates = await envelopes_for_order(
        redis_client, ORDERS_STREAM, manual, "order.status_updated.v1"
    )
    assert [(u.payload["status"], u.payload["simulate"]) for u in updates] == [
        (status, False) for status in ORDER_LIFECYCLE[1:]
    ]
    reports = await envelopes_for_order(redis_client, ORDER_STATUS_STREAM, manual)
    assert [(r.payload["status"], r.source) for r in reports] == [
        ("confirmed", "operator"),
        ("preparing", "operator"),
        ("out_for_delivery", "operator"),
        ("delivered", "delivery"),
    ]
    assert await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, manual) == []
    assert await envelopes_for_order(redis_client, SIMULATE_DELIVERY_STREAM, manual) == []
    # Its lifecycle is over: one more step is refused.
    done = await console.client.post(f"/api/v1/ops/orders/{manual}/advance", headers=AUTH)
    assert done.status_code == 409
    assert done.json()["type"] == "urn:orderflow:problem:order-delivered"
