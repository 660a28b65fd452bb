"""The REST API on a real socket, a real Redis and a real SQLite store."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from orderflow.runtime.testing import stream_entries
from tests.web.conftest import LiveApi

ORDERS = "/api/v1/orders"


def body(*lines: tuple[str, int]) -> dict[str, Any]:
    return {"lines": [{"item_id": item, "quantity": qty} for item, qty in lines]}


async def test_menu_lists_items_with_price_and_stock(api: LiveApi) -> None:
    response = await api.client.get("/api/v1/menu")
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) >= 12
    by_id = {item["id"]: item for item in items}
    assert by_id["margherita"]["stock"] == 40
    assert by_id["margherita"]["price"] == 950
    assert set(by_id["margherita"]) == {"id", "name", "description", "category", "price", "stock"}
    assert response.json()["currency"] == "EUR"  # the page formats prices with it


async def test_place_order_returns_201_location_and_order(
    api: LiveApi, redis_client: aioredis.Redis
) -> None:
    response = await api.client.post(ORDERS, json=body(("margherita", 2), ("diavola", 1)))

    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    assert "idempotency-replayed" not in response.headers
    assert order["status"] == "created"
    assert order["total"] == 2 * 950 + 1150
    assert [(line["item_id"], line["quantity"]) for line in order["lines"]] == [
        ("margherita", 2),
        ("diavola", 1),
    ]
    assert [entry["status"] for entry in order["history"]] == ["created"]
    assert order["delivery"] is None

    stock = await api.stock()
    assert stock["margherita"] == 38
    assert stock["diavola"] == 29

    fetched = await api.client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json()["id"] == order["id"]
    assert fetched.json()["history"] == order["history"]

    # The outbox was published right away, with the HTTP request's correlation id.
    entries: Any = await stream_entries(redis_client, "orders-stream")
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"event_type"] == b"order.created.v1"
    assert fields[b"correlation_id"].decode() == response.headers["x-correlation-id"]
    assert json.loads(fields[b"payload"])["order_id"] == order["id"]


async def test_client_correlation_id_is_kept(api: LiveApi, redis_client: aioredis.Redis) -> None:
    response = await api.client.post(
        ORDERS, json=body(("tiramisu", 1)), headers={"X-Correlation-ID": "checkout-42"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-correlation-id"] == "checkout-42"
    entries: Any = await stream_entries(redis_client, "orders-stream")
    assert entries[0][1][b"correlation_id"] == b"checkout-42"

    # A header that could inject into logs is replaced, not echoed.
    bad = await api.client.get("/healthz", headers={"X-Correlation-ID": "a b\tc"})
    assert bad.headers["x-correlation-id"] != "a b\tc"
    assert len(bad.headers["x-correlation-id"]) == 32


async def test_out_of_stock_names_item_and_quantity_left(api: LiveApi) -> None:
    await api.store.set_stock("diavola", 3)

    response = await api.client.post(ORDERS, json=body(("margherita", 1), ("diavola", 5)))

    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "urn:orderflow:problem:out-of-stock"
    assert problem["item_id"] == "diavola"
    assert problem["available"] == 3
    assert problem["requested"] == 5
    assert "Diavola" in problem["detail"] and "3" in problem["detail"]
    # all or nothing: the first line was not reserved either
    stock = await api.stock()
    assert stock["margherita"] == 40
    assert stock["diavola"] == 3


async def test_a_sold_out_item_is_called_sold_out(api: LiveApi) -> None:
    await api.store.set_stock("diavola", 0)

    response = await api.client.post(ORDERS, json=body(("diavola", 2)))

    assert response.status_code == 409
    problem = response.json()
    assert problem["available"] == 0
    assert "'Diavola' (diavola) is sold out" in problem["detail"]
    assert "Only 0" not in problem["detail"]
    assert (await api.stock())["diavola"] == 0


async def test_unknown_item_is_404_naming_it(api: LiveApi) -> None:
    response = await api.client.post(ORDERS, json=body(("margherita", 1), ("no-such-dish", 1)))
    assert response.status_code == 404
    assert response.json()["item_ids"] == ["no-such-dish"]
    assert (await api.stock())["margherita"] == 40


async def test_idempotent_retry_returns_first_result(
    api: LiveApi, redis_client: aioredis.Redis
) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    first = await api.client.post(ORDERS, json=body(("margherita", 2)), headers=headers)
    second = await api.client.post(ORDERS, json=body(("margherita", 2)), headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert (await api.stock())["margherita"] == 38
    assert await api.store.count_orders() == 1
    streamed: Any = await stream_entries(redis_client, "orders-stream")
    assert len(streamed) == 1


async def test_idempotency_key_with_another_body_is_422(api: LiveApi) -> None:
    headers = {"Idempotency-Key": "retry-me-2"}
    first = await api.client.post(ORDERS, json=body(("margherita", 2)), headers=headers)
    other = await api.client.post(ORDERS, json=body(("margherita", 3)), headers=headers)

    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["type"] == "urn:orderflow:problem:idempotency-key-reused"
    assert "retry-me-2" in other.json()["detail"]
    assert (await api.stock())["margherita"] == 38
    assert await api.store.count_orders() == 1


async def test_same_body_without_key_makes_two_orders(api: LiveApi) -> None:
    first = await api.client.post(ORDERS, json=body(("margherita", 1)))
    second = await api.client.post(ORDERS, json=body(("margherita", 1)))
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert (await api.stock())["margherita"] == 38


async def test_json_with_charset_and_vendor_json_types_are_accepted(api: LiveApi) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.orderflow+json"):
        response = await api.client.post(
            ORDERS,
            content=json.dumps(body(("margherita", 1))).encode(),
            headers={"content-type": content_type},
        )
        assert response.status_code == 201, (content_type, response.text)


async def test_get_order_shows_history_and_delivery_and_replay_shows_creation(
    api: LiveApi,
) -> None:
    headers = {"Idempotency-Key": "history-1"}
    created = await api.client.post(ORDERS, json=body(("funghi", 1)), headers=headers)
    assert created.status_code == 201
    order_id = created.json()["id"]

    store = api.store
    assert (await store.update_order_status(order_id, "confirmed", "2030-01-01T00:00:01Z")).changed
    assert (
        await store.update_order_status(order_id, "out_for_delivery", "2030-01-01T00:00:02Z")
    ).changed
    result = await store.create_delivery(order_id)
    delivery, made = result.delivery, result.created
    assert made

    fetched = (await api.client.get(f"{ORDERS}/{order_id}")).json()
    assert fetched["status"] == "out_for_delivery"
    assert [entry["status"] for entry in fetched["history"]] == [
        "created",
        "confirmed",
        "out_for_delivery",
    ]
    assert fetched["delivery"]["id"] == delivery.id
    assert fetched["delivery"]["status"] == "waiting"

    # A late retry of the POST still gets the first answer, not today's state.
    replay = await api.client.post(ORDERS, json=body(("funghi", 1)), headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotency-replayed"] == "true"
    assert replay.json() == created.json()
