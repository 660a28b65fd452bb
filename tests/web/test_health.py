"""Liveness, readiness (with Redis or the store down), CORS and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis

from orderflow.agents.settings import Settings
from tests.web.conftest import LiveApi, free_port, make_settings, running_api


async def test_healthz_and_readyz_when_everything_is_up(api: LiveApi) -> None:
    health = await api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}


async def test_readyz_is_503_when_the_store_is_unreachable(api: LiveApi) -> None:
    await api.store.close()  # the store handle is gone: the process can no longer serve orders

    ready = await api.client.get("/readyz")

    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    problem = ready.json()
    assert problem["status"] == 503
    assert problem["checks"]["redis"] == "ok"
    assert problem["checks"]["store"] != "ok"
    assert problem["detail"].startswith("store: ")
    # liveness does not depend on the store
    assert (await api.client.get("/healthz")).status_code == 200


@pytest.fixture
async def api_without_redis(store_url: str) -> AsyncIterator[LiveApi]:
    """The API pointed at a port where no Redis listens (the client connects lazily)."""
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", store_url)
    async for live in running_api(settings):
        yield live


async def test_readyz_is_503_when_redis_is_unreachable(api_without_redis: LiveApi) -> None:
    ready = await api_without_redis.client.get("/readyz")
    assert ready.status_code == 503
    problem = ready.json()
    assert problem["checks"]["store"] == "ok"
    assert problem["checks"]["redis"].startswith("unreachable")
    assert "redis: " in problem["detail"]


@pytest.fixture
async def cors_api(redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    settings: Settings = make_settings(
        redis_url, store_url, cors_origins="https://shop.example, https://admin.example"
    )
    async for live in running_api(settings):
        yield live


async def test_cors_allows_configured_origins_only(cors_api: LiveApi) -> None:
    allowed = await cors_api.client.get("/api/v1/menu", headers={"Origin": "https://shop.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "Location" in allowed.headers["access-control-expose-headers"]

    other = await cors_api.client.get("/api/v1/menu", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers

    preflight = await cors_api.client.options(
        "/api/v1/orders",
        headers={
            "Origin": "https://admin.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://admin.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Idempotency-Key" in preflight.headers["access-control-allow-headers"]
    assert "traceparent" in preflight.headers["access-control-allow-headers"]


async def test_no_cors_headers_by_default(api: LiveApi) -> None:
    response = await api.client.get("/api/v1/menu", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_openapi_document_describes_the_api(api: LiveApi) -> None:
    response = await api.client.get("/docs/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    assert spec["openapi"].startswith("3.0")
    assert set(spec["paths"]) >= {
        "/api/v1/menu",
        "/api/v1/orders",
        "/api/v1/orders/{order_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    post = spec["paths"]["/api/v1/orders"]["post"]
    lines = post["requestBody"]["content"]["application/json"]["schema"]["properties"]["lines"]
    assert lines["maxItems"] == 50
    assert lines["items"]["properties"]["quantity"]["maximum"] == Settings().max_line_quantity
    assert set(post["responses"]) >= {"201", "400", "404", "409", "413", "415", "422"}
    # OpenAPI 3.0 has no $defs/"type": "null"/numeric exclusiveMinimum: the converter removed them
    text = json.dumps(spec)
    assert "$defs" not in text and '"type": "null"' not in text
    schemathesis.openapi.from_dict(spec).validate()  # against the OpenAPI 3.0 meta-schema
    assert post["responses"]["201"]["links"]["GetOrder"]["operationId"] == "getOrder"
    assert (await api.client.get("/docs")).status_code == 200


async def test_order_is_taken_while_redis_is_down(api_without_redis: LiveApi) -> None:
    """The order commits with its outbox; publishing waits for the relay, the client gets 201."""
    response = await api_without_redis.client.post(
        "/api/v1/orders", json={"lines": [{"item_id": "margherita", "quantity": 1}]}
    )
    assert response.status_code == 201, response.text
    assert (await api_without_redis.stock())["margherita"] == 39
    pending = await api_without_redis.store.outbox_pending()
    assert {message.envelope.event_type for message in pending} == {
        "order.created.v1",
        "order.simulate.v1",
    }


@pytest.fixture
async def gateway(redis_client: Any, api_settings: Settings) -> AsyncIterator[LiveApi]:
    async for live in running_api(api_settings, role="gateway"):
        yield live


async def test_gateway_role_serves_tracking_and_probes_but_no_rest(gateway: LiveApi) -> None:
    assert (await gateway.client.get("/healthz")).status_code == 200
    assert (await gateway.client.get("/readyz")).status_code == 200
    assert (await gateway.client.get("/metrics")).status_code == 200
    menu = await gateway.client.get("/api/v1/menu")
    assert menu.status_code == 404
    assert menu.headers["content-type"].startswith("application/problem+json")
    # the tracking route exists: a plain GET is told to upgrade
    tracking = await gateway.client.get("/ws/v1/order-tracking/" + "0" * 32)
    assert tracking.status_code == 426


def test_unknown_role_is_refused(api_settings: Settings) -> None:
    from orderflow.web.app import create_app

    with pytest.raises(ValueError, match="unknown role"):
        create_app(api_settings, role="admin")  # type: ignore[arg-type]
