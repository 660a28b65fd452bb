"""``POST /api/v1/benchmark/noop``: off unless ORDERFLOW_BENCHMARK_NOOP_ROUTE is set.

benchmarks/load.py divides the order route's throughput by this route's; a
deployment must not serve it by accident, so the default app answers 404, and
the route appears in the OpenAPI document only when it is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orderflow.agents.settings import Settings
from tests.web.conftest import LiveApi, make_settings, running_api

ROUTE = "/api/v1/benchmark/noop"
BODY = b'{"lines": [{"item_id": "margherita", "quantity": 1}]}'


@pytest.fixture
async def noop_api(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    async for live in running_api(make_settings(redis_url, store_url, benchmark_noop_route=True)):
        yield live


def test_the_setting_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_BENCHMARK_NOOP_ROUTE", raising=False)
    assert Settings().benchmark_noop_route is False
    monkeypatch.setenv("ORDERFLOW_BENCHMARK_NOOP_ROUTE", "true")
    assert Settings().benchmark_noop_route is True


async def test_the_default_app_does_not_serve_it(api: LiveApi) -> None:
    answer = await api.client.post(
        ROUTE, content=BODY, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    spec = (await api.client.get("/docs/openapi.json")).json()
    assert ROUTE not in spec["paths"]


async def test_when_enabled_it_parses_the_body_and_does_nothing_else(noop_api: LiveApi) -> None:
    orders_before = len(await noop_api.store.recent_orders(100))
    answer = await noop_api.client.post(
        ROUTE, content=BODY, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "bytes": len(BODY)}
    assert len(await noop_api.store.recent_orders(100)) == orders_before
    spec = (await noop_api.client.get("/docs/openapi.json")).json()
    assert "post" in spec["paths"][ROUTE]


async def test_when_enabled_a_body_that_is_not_json_is_a_problem(noop_api: LiveApi) -> None:
    answer = await noop_api.client.post(
        ROUTE, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("malformed-json")
