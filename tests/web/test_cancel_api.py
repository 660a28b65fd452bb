"""``POST /api/v1/orders/<id>/cancel`` on a real socket, a real Redis and a real SQLite store."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from orderflow.models.documents import utc_now
from tests.web.conftest import LiveApi

ORDERS = "/api/v1/orders"


async def place(api: LiveApi, *lines: tuple[str, int]) -> dict[str, Any]:
    body = {"lines": [{"item_id": item, "quantity": qty} for item, qty in lines]}
    response = await api.client.post(ORDERS, json=body)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def test_cancel_returns_the_stock_and_announces_it(
    api: LiveApi, redis_client: aioredis.Redis
) -> None:
    before = await api.stock()
    order = await place(api, ("margherita", 3), ("tiramisu", 1))
    assert (await api.stock())["margherita"] == before["margherita"] - 3

    response = await api.client.post(f"{ORDERS}/{order['id']}/cancel")

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == order["id"]
    assert cancelled["status"] == "cancelled"
    assert [h["status"] for h in cancelled["history"]] == ["created", "cancelled"]
    assert await api.stock() == before
    fetched = await api.client.get(f"{ORDERS}/{order['id']}")
    assert fetched.json() == cancelled

    # Published at once from the outbox, with the request's correlation id.
    correlation = response.headers["x-correlation-id"]
    orders: Any = await redis_client.xrange("orders-stream")
    assert [e[1][b"event_type"] for e in orders] == [b"order.created.v1", b"order.cancelled.v1"]
    payload = json.loads(orders[1][1][b"payload"])
    assert payload["order_id"] == order["id"]
    assert payload["previous"] == "created"
    assert orders[1][1][b"correlation_id"].decode() == correlation
    menu: Any = await redis_client.xrange("menu-stream")
    assert [e[1][b"event_type"] for e in menu] == [b"stock.changed.v1"]
    assert json.loads(menu[0][1][b"payload"])["item_ids"] == ["margherita", "tiramisu"]


async def test_repeated_cancel_gets_the_same_answer_and_no_second_return(
    api: LiveApi, redis_client: aioredis.Redis
) -> None:
    order = await place(api, ("diavola", 2))
    first = await api.client.post(f"{ORDERS}/{order['id']}/cancel")
    stock = await api.stock()

    again = await api.client.post(f"{ORDERS}/{order['id']}/cancel")

    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    assert await api.stock() == stock
    assert await redis_client.xlen("orders-stream") == 2  # created, cancelled: once
    assert await redis_client.xlen("menu-stream") == 1


async def test_cancel_from_preparing_on_is_a_409_saying_why(api: LiveApi) -> None:
    order = await place(api, ("diavola", 1))
    await api.store.update_order_status(order["id"], "confirmed", utc_now())
    await api.store.update_order_status(order["id"], "preparing", utc_now())
    stock = await api.stock()

    response = await api.client.post(f"{ORDERS}/{order['id']}/cancel")

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "urn:orderflow:problem:order-not-cancellable"
    assert problem["status_now"] == "preparing"
    assert "already preparing" in problem["detail"]
    assert "Nothing was changed" in problem["detail"]
    assert await api.stock() == stock
    fetched = await api.client.get(f"{ORDERS}/{order['id']}")
    assert fetched.json()["status"] == "preparing"


async def test_cancel_of_a_confirmed_order_is_allowed(api: LiveApi) -> None:
    order = await place(api, ("diavola", 1))
    await api.store.update_order_status(order["id"], "confirmed", utc_now())
    response = await api.client.post(f"{ORDERS}/{order['id']}/cancel")
    assert response.status_code == 200, response.text
    assert [h["status"] for h in response.json()["history"]] == [
        "created",
        "confirmed",
        "cancelled",
    ]


async def test_unknown_and_malformed_ids_are_404_problems_like_get(api: LiveApi) -> None:
    for order_id in ("f" * 32, "not-an-id", "F" * 32):
        cancel = await api.client.post(f"{ORDERS}/{order_id}/cancel")
        get = await api.client.get(f"{ORDERS}/{order_id}")
        assert cancel.status_code == get.status_code == 404, order_id
        assert cancel.headers["content-type"].startswith("application/problem+json")
        assert (
            cancel.json()["type"] == get.json()["type"] == "urn:orderflow:problem:order-not-found"
        )


async def test_a_cancelled_order_is_never_moved_again(api: LiveApi) -> None:
    order = await place(api, ("diavola", 1))
    await api.client.post(f"{ORDERS}/{order['id']}/cancel")
    change = await api.store.update_order_status(order["id"], "confirmed", utc_now())
    assert (change.changed, change.cancelled) == (False, True)
    fetched = await api.client.get(f"{ORDERS}/{order['id']}")
    assert fetched.json()["status"] == "cancelled"


async def test_the_route_is_documented(api: LiveApi) -> None:
    spec = (await api.client.get("/docs/openapi.json")).json()
    operation = spec["paths"]["/api/v1/orders/{order_id}/cancel"]["post"]
    assert operation["operationId"] == "cancelOrder"
    assert set(operation["responses"]) >= {"200", "404", "409", "503"}
    order_schema = json.dumps(operation["responses"]["200"])
    assert '"cancelled"' in order_schema  # the status enum names it
