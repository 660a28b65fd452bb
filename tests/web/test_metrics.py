"""``/metrics``: HTTP and domain counters with exact values, in one process and across
Sanic workers (prometheus_client multiprocess mode)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from orderflow.models.store import opened_store
from orderflow.runtime.localserver import LocalRedisServer, free_port
from tests.web.api_process import ApiProcess
from tests.web.conftest import LiveApi, seeded_store

ORDERS = "/api/v1/orders"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in an exposition text (0 when the series is absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


def order(item: str, quantity: int = 1) -> dict[str, Any]:
    return {"lines": [{"item_id": item, "quantity": quantity}]}


async def test_counters_follow_requests_in_one_process(api: LiveApi) -> None:
    await api.store.set_stock("tiramisu", 3)  # below the line cap, to be out of stock
    before = (await api.client.get("/metrics")).text

    assert (await api.client.post(ORDERS, json=order("margherita"))).status_code == 201
    assert (await api.client.post(ORDERS, json=order("tiramisu", 4))).status_code == 409
    assert (await api.client.post(ORDERS, json=order("nope"))).status_code == 404
    assert (
        await api.client.post(ORDERS, content=b"{", headers={"content-type": "application/json"})
    ).status_code == 400
    assert (await api.client.get("/no/such/path")).status_code == 404

    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("orderflow_orders_placed_total") == 1
    assert delta("orderflow_orders_rejected_total", reason="out_of_stock") == 1
    assert delta("orderflow_orders_rejected_total", reason="unknown_item") == 1
    assert delta("orderflow_orders_rejected_total", reason="invalid_body") == 1
    route = "/api/v1/orders"
    assert delta("orderflow_http_requests_total", route=route, method="POST", status="201") == 1
    assert delta("orderflow_http_requests_total", route=route, method="POST", status="409") == 1
    assert (
        delta("orderflow_http_requests_total", route="unmatched", method="GET", status="404") == 1
    )
    assert delta("orderflow_http_request_seconds_count", route=route, method="POST") == 4
    assert "orderflow_websocket_connections" in after


async def test_counts_are_exact_across_two_workers(
    redis_server: LocalRedisServer, tmp_path: Any, api_process_factory: Any
) -> None:
    """7 orders placed and 3 refused through ``orderflow api --workers 2``: every scrape,
    whichever worker answers it, reports exactly those numbers."""
    store_url = await seeded_store(tmp_path)
    async with opened_store(store_url) as store:  # below the line cap, to be out of stock
        await store.set_stock("tiramisu", 3)
    server: ApiProcess = await asyncio.to_thread(
        api_process_factory, redis_server.url, store_url, "--workers", "2", "--role", "api"
    )

    # A new connection per request, so the kernel spreads them over both workers.
    async def post(payload: dict[str, Any]) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return (await client.post(ORDERS, json=payload)).status_code

    statuses = [await post(order("margherita")) for _ in range(7)]
    statuses += [await post(order("tiramisu", 4)), await post(order("nope"))]
    statuses.append(await post({"lines": []}))
    assert statuses == [201] * 7 + [409, 404, 422]

    for _ in range(12):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            text = (await client.get("/metrics")).text
        assert sample(text, "orderflow_orders_placed_total") == 7
        assert sample(text, "orderflow_orders_rejected_total", reason="out_of_stock") == 1
        assert sample(text, "orderflow_orders_rejected_total", reason="unknown_item") == 1
        assert sample(text, "orderflow_orders_rejected_total", reason="invalid_body") == 1
        route = "/api/v1/orders"
        assert (
            sample(text, "orderflow_http_requests_total", route=route, method="POST", status="201")
            == 7
        )
        assert (
            sample(text, "orderflow_http_request_seconds_count", route=route, method="POST") == 10
        )


async def test_with_an_admin_port_metrics_leave_the_public_port(
    redis_server: LocalRedisServer, tmp_path: Any, api_process_factory: Any
) -> None:
    """The production shape (the chart sets ORDERFLOW_ADMIN_PORT): `/metrics` is served
    by `orderflow api`'s main process on the admin port, summed over both workers, and
    the public port has no `/metrics` at all."""
    store_url = await seeded_store(tmp_path)
    admin_port = free_port()
    server: ApiProcess = await asyncio.to_thread(
        api_process_factory, redis_server.url, store_url, "--workers", "2",
        ORDERFLOW_ADMIN_PORT=str(admin_port),
    )  # fmt: skip
    for _ in range(5):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.post(ORDERS, json=order("margherita"))).status_code == 201
    async with httpx.AsyncClient(timeout=30) as client:
        public = await client.get(f"{server.url}/metrics")
        assert public.status_code == 404
        assert public.headers["content-type"] == "application/problem+json"
        admin = f"http://127.0.0.1:{admin_port}"
        text = (await client.get(f"{admin}/metrics")).text
        assert sample(text, "orderflow_orders_placed_total") == 5
        assert (await client.get(f"{admin}/livez")).status_code == 200
        assert (await client.get(f"{admin}/readyz")).status_code == 404  # on the public port
        assert (await client.get(f"{server.url}/readyz")).status_code == 200
