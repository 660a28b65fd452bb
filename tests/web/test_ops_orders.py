"""Switchable simulation and the console's orders, on a real app, Valkey and SQLite store.

No service runs here: what the API does is what is checked -- the flag stored and
returned, the events it writes (and does not write), the recent-orders list, and
each hand-made step published as the simulator's report on the simulator's stream,
refused (409, nothing published) when it is not the operator's to take. The whole
lifecycle through the running services is tests/system/test_manual_lifecycle.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.agents.topics import (
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_ORDER_STREAM,
)
from orderflow.models.documents import utc_now
from orderflow.runtime import Envelope
from orderflow.web.ops.auth import fingerprint
from tests.web.conftest import LiveApi, make_settings, running_api

TOKEN = "s3cret-operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIZZA = {"item_id": "margherita", "quantity": 1}


@pytest.fixture
async def ops(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    settings = make_settings(redis_url, store_url, operator_token=TOKEN)
    async for live in running_api(settings):
        yield live


async def on_stream(redis: aioredis.Redis, stream: str, order_id: str) -> list[Envelope]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    envelopes = [Envelope.from_fields(fields) for _, fields in entries]
    return [e for e in envelopes if e.payload.get("order_id") == order_id]


async def place(ops: LiveApi, **body: Any) -> dict[str, Any]:
    response = await ops.client.post("/api/v1/orders", json={"lines": [PIZZA], **body})
    assert response.status_code == 201, response.text
    placed: dict[str, Any] = response.json()
    return placed


async def advance(ops: LiveApi, order_id: str, **body: Any) -> Any:
    return await ops.client.post(
        f"/api/v1/ops/orders/{order_id}/advance", headers=AUTH, json=body or None
    )


async def test_an_order_placed_with_simulate_false_starts_no_simulation(
    ops: LiveApi, redis_client: aioredis.Redis
) -> None:
    manual = await place(ops, simulate=False)
    simulated = await place(ops)
    assert manual["simulate"] is False and simulated["simulate"] is True
    stored = await ops.client.get(f"/api/v1/orders/{manual['id']}")
    assert stored.json()["simulate"] is False and stored.json()["status"] == "created"

    created = await on_stream(redis_client, ORDERS_STREAM, manual["id"])
    assert [(e.event_type, e.payload["simulate"]) for e in created] == [("order.created.v1", False)]
    assert await on_stream(redis_client, SIMULATE_ORDER_STREAM, manual["id"]) == []
    # A simulated order's events are what they always were: no flag, and a simulation.
    (simulated_created,) = await on_stream(redis_client, ORDERS_STREAM, simulated["id"])
    assert "simulate" not in simulated_created.payload
    started = await on_stream(redis_client, SIMULATE_ORDER_STREAM, simulated["id"])
    assert [e.payload["status"] for e in started] == ["confirmed"]


@pytest.mark.parametrize("flag", ["false", 0, None, [False]])
async def test_a_bad_simulate_flag_is_a_422_and_orders_nothing(ops: LiveApi, flag: Any) -> None:
    stock = await ops.stock()
    response = await ops.client.post("/api/v1/orders", json={"lines": [PIZZA], "simulate": flag})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert [error["field"] for error in body["errors"]] == ["simulate"]
    assert body["correlation_id"]
    assert await ops.store.count_orders() == 0
    assert await ops.stock() == stock


async def test_the_flag_is_part_of_the_idempotent_request(ops: LiveApi) -> None:
    key = {"Idempotency-Key": "flag-1"}
    first = await ops.client.post(
        "/api/v1/orders", json={"lines": [PIZZA], "simulate": False}, headers=key
    )
    assert first.status_code == 201
    other = await ops.client.post("/api/v1/orders", json={"lines": [PIZZA]}, headers=key)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:orderflow:problem:idempotency-key-reused"
    again = await ops.client.post(
        "/api/v1/orders", json={"lines": [PIZZA], "simulate": False}, headers=key
    )
    assert again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    # An explicit true is the same request as none.
    key2 = {"Idempotency-Key": "flag-2"}
    implicit = await ops.client.post("/api/v1/orders", json={"lines": [PIZZA]}, headers=key2)
    explicit = await ops.client.post(
        "/api/v1/orders", json={"lines": [PIZZA], "simulate": True}, headers=key2
    )
    assert explicit.headers["Idempotency-Replayed"] == "true"
    assert explicit.json()["id"] == implicit.json()["id"]
    assert await ops.store.count_orders() == 2


async def test_the_flag_is_in_the_openapi_document(ops: LiveApi) -> None:
    spec = (await ops.client.get("/docs/openapi.json")).json()
    body = spec["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    simulate = body["schema"]["properties"]["simulate"]
    assert simulate["type"] == "boolean" and simulate["default"] is True
    created = spec["paths"]["/api/v1/orders"]["post"]["responses"]["201"]["content"]
    assert created["application/json"]["schema"]["properties"]["simulate"]["type"] == "boolean"


async def test_recent_orders_newest_first(ops: LiveApi) -> None:
    placed = [(await place(ops, simulate=n == 1))["id"] for n in range(3)]
    response = await ops.client.get("/api/v1/ops/orders?limit=2", headers=AUTH)
    assert response.status_code == 200
    orders = response.json()["orders"]
    assert [o["id"] for o in orders] == [placed[2], placed[1]]
    assert [o["simulate"] for o in orders] == [False, True]
    assert [o["next_step"] for o in orders] == ["confirmed", None]
    every = (await ops.client.get("/api/v1/ops/orders", headers=AUTH)).json()["orders"]
    assert [o["id"] for o in every] == placed[::-1]
    for bad in ("0", "201", "x", "-1"):
        refused = await ops.client.get(f"/api/v1/ops/orders?limit={bad}", headers=AUTH)
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["correlation_id"]
    assert (await ops.client.get("/api/v1/ops/orders")).status_code == 401


async def test_advance_reports_what_the_simulator_would_and_is_audited(
    ops: LiveApi, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderflow.audit")
    order_id = (await place(ops, simulate=False))["id"]
    response = await advance(ops, order_id, status="confirmed")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "confirmed" and body["stream"] == ORDER_STATUS_STREAM
    (report,) = await on_stream(redis_client, ORDER_STATUS_STREAM, order_id)
    assert report.event_type == "order.status_reported.v1"
    assert report.event_id == body["event_id"]
    assert report.payload["status"] == "confirmed" and report.source == "operator"
    assert report.correlation_id == response.headers["X-Correlation-ID"]
    # Nothing moved the stored order (no orders service runs here): the status is not
    # written by the console, only reported.
    stored = await ops.store.get_order(order_id)
    assert stored is not None and stored.status == "created"

    audit = [r for r in caplog.records if r.name == "orderflow.audit"]
    assert [(r.audit_action, r.order_id, r.status) for r in audit] == [  # type: ignore[attr-defined]
        ("order.advance", order_id, "confirmed")
    ]
    assert audit[0].audit_operator == fingerprint(TOKEN)  # type: ignore[attr-defined]


async def test_advance_refusals_publish_nothing(
    ops: LiveApi, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderflow.audit")
    simulated = (await place(ops))["id"]
    manual = (await place(ops, simulate=False))["id"]

    async def refused(order_id: str, kind: str, code: int = 409, **body: Any) -> None:
        response = await advance(ops, order_id, **body)
        assert response.status_code == code, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == f"urn:orderflow:problem:{kind}" and problem["correlation_id"]

    await refused(simulated, "order-simulated")
    await refused(manual, "stale-step", status="preparing")
    await refused(manual, "invalid-request", 422, status="cooked")
    await refused(manual, "invalid-request", 422, stauts="confirmed")
    await refused("0" * 32, "order-not-found", 404)
    # Out for delivery, but the delivery service has not created the delivery yet.
    for status in ("confirmed", "preparing", "out_for_delivery"):
        await ops.store.update_order_status(manual, status, utc_now())
    await refused(manual, "step-pending")
    assert await on_stream(redis_client, ORDER_STATUS_STREAM, manual) == []
    assert await on_stream(redis_client, ORDER_STATUS_STREAM, simulated) == []
    assert [r for r in caplog.records if r.name == "orderflow.audit"] == []

    # With its delivery, the next steps are the delivery's, on delivery-status-stream.
    delivery = (await ops.store.create_delivery(manual)).delivery
    taken = await advance(ops, manual, status="on_the_way")
    assert taken.status_code == 202 and taken.json()["stream"] == DELIVERY_STATUS_STREAM
    (report,) = await on_stream(redis_client, DELIVERY_STATUS_STREAM, manual)
    assert report.event_type == "delivery.status_reported.v1"
    assert (report.payload["delivery_id"], report.payload["status"]) == (delivery.id, "on_the_way")

    await ops.store.update_delivery_status(delivery.id, "on_the_way", utc_now())
    await ops.store.update_delivery_status(delivery.id, "delivered", utc_now())
    await refused(manual, "step-pending")  # the order's own "delivered" is on its way
    await ops.store.update_order_status(manual, "delivered", utc_now())
    await refused(manual, "order-delivered")
    assert len(await on_stream(redis_client, DELIVERY_STATUS_STREAM, manual)) == 1


async def test_a_step_redis_did_not_confirm_is_outcome_unknown_not_failed(
    ops: LiveApi, dead_publisher: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderflow.audit")
    order_id = (await place(ops, simulate=False))["id"]
    publisher = ops.app.ctx.publisher
    ops.app.ctx.publisher = dead_publisher  # Redis unreachable for the console's publish
    try:
        response = await advance(ops, order_id, status="confirmed")
    finally:
        ops.app.ctx.publisher = publisher  # stopped with the app
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    problem = response.json()
    assert problem["type"] == "urn:orderflow:problem:step-outcome-unknown"
    assert problem["step"] == "confirmed" and problem["correlation_id"]
    assert "may or may not" in problem["detail"]
    # Audited all the same: the step may have been reported.
    audit = [r for r in caplog.records if r.name == "orderflow.audit"]
    assert [(r.audit_action, r.status, r.outcome) for r in audit] == [  # type: ignore[attr-defined]
        ("order.advance", "confirmed", "unknown")
    ]
