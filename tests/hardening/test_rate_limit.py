"""The per-client order rate limit: one bucket per client across API processes, a 429
problem with Retry-After that orders nothing, forwarded addresses believed only from
trusted proxies, and the line cap below every seeded stock level."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orderflow.agents.settings import Settings
from orderflow.models.menu import DEMO_MENU
from orderflow.runtime.localserver import free_port
from orderflow.web.client_address import client_address, parse_networks
from orderflow.web.rate_limit import RATE_LIMIT_UNCHECKED
from tests.web.conftest import LiveApi, make_settings, running_api, seeded_store

ORDER = {"lines": [{"item_id": "margherita", "quantity": 1}]}
LOCAL = parse_networks("127.0.0.1, 10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "client"),
    [
        ("203.0.113.7", None, LOCAL, "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", LOCAL, "203.0.113.7"),  # not a proxy: header ignored
        ("127.0.0.1", "198.51.100.1", (), "127.0.0.1"),  # nobody trusted
        ("127.0.0.1", "198.51.100.1", LOCAL, "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", LOCAL, "198.51.100.1"),  # forged left
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", LOCAL, "10.9.9.9"),  # all hops ours
        ("127.0.0.1", "198.51.100.1, garbage", LOCAL, "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::1]:443", LOCAL, "2001:db8::1"),
        ("127.0.0.1", "198.51.100.1:51234", LOCAL, "198.51.100.1"),
    ],
)
def test_the_client_address(peer: str, forwarded: str | None, proxies: Any, client: str) -> None:
    assert client_address(peer, forwarded, proxies) == client


def test_a_bad_trusted_proxy_entry_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match=r"not an IP address or CIDR block: '10\.0\.0\.0/33'"):
        Settings(trusted_proxies="127.0.0.1, 10.0.0.0/33")


def test_one_request_cannot_buy_any_seeded_item_out() -> None:
    cap = Settings().max_line_quantity
    assert [item.id for item in DEMO_MENU if item.stock <= cap] == []


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    return await seeded_store(tmp_path)


async def two_apis(redis_url: str, store_url: str, **limits: Any) -> AsyncIterator[list[LiveApi]]:
    settings = make_settings(redis_url, store_url, **limits)
    async for first in running_api(settings):
        async for second in running_api(settings):
            yield [first, second]


async def test_the_limit_holds_across_api_processes_and_refuses_with_retry_after(
    redis_client: Any, redis_url: str, store_url: str
) -> None:
    async for apis in two_apis(
        redis_url, store_url, order_rate_limit_burst=4, order_rate_limit_per_minute=6
    ):
        statuses = [
            (await apis[n % 2].client.post("/api/v1/orders", json=ORDER)).status_code
            for n in range(4)
        ]
        assert statuses == [201] * 4
        stock = await apis[0].stock()
        orders = await apis[0].store.count_orders()

        refused = await apis[1].client.post("/api/v1/orders", json=ORDER)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == "urn:orderflow:problem:rate-limited"
        assert body["correlation_id"] == refused.headers["x-correlation-id"]
        assert 1 <= int(refused.headers["retry-after"]) <= 10  # one token: 10 s at 6/min
        assert await apis[0].stock() == stock
        assert await apis[0].store.count_orders() == orders

        # Reads and other clients are not limited.
        assert (await apis[0].client.get("/api/v1/menu")).status_code == 200
        await redis_client.delete(*await redis_client.keys("orderflow:ratelimit:*"))
        assert (await apis[0].client.post("/api/v1/orders", json=ORDER)).status_code == 201


async def test_forwarded_clients_have_buckets_of_their_own_only_behind_trusted_proxies(
    redis_client: Any, redis_url: str, store_url: str
) -> None:
    limits = {"order_rate_limit_burst": 2, "order_rate_limit_per_minute": 1}
    async for apis in two_apis(redis_url, store_url, trusted_proxies="127.0.0.1", **limits):
        api = apis[0]
        for client in ("198.51.100.1", "198.51.100.2"):
            headers = {"x-forwarded-for": client}
            codes = [
                (await api.client.post("/api/v1/orders", json=ORDER, headers=headers)).status_code
                for _ in range(3)
            ]
            assert codes == [201, 201, 429], client
    await redis_client.delete(*await redis_client.keys("orderflow:ratelimit:*"))
    async for apis in two_apis(redis_url, store_url, **limits):  # no proxy trusted
        api = apis[0]
        codes = [
            (
                await api.client.post(
                    "/api/v1/orders", json=ORDER, headers={"x-forwarded-for": f"198.51.100.{n}"}
                )
            ).status_code
            for n in range(3)
        ]
        assert codes == [201, 201, 429]  # a fresh forged address per request buys nothing


async def test_zero_per_minute_lifts_the_limit(
    redis_client: Any, redis_url: str, store_url: str
) -> None:
    settings = make_settings(
        redis_url, store_url, order_rate_limit_per_minute=0, order_rate_limit_burst=1
    )
    async for api in running_api(settings):
        codes = {
            (await api.client.post("/api/v1/orders", json=ORDER)).status_code for _ in range(15)
        }
        assert codes == {201}
    assert await redis_client.keys("orderflow:ratelimit:*") == []


async def test_without_redis_the_order_is_let_through_and_counted(store_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(dead, store_url, order_rate_limit_per_minute=30)
    before = RATE_LIMIT_UNCHECKED._value.get()
    async for api in running_api(settings):
        response = await api.client.post("/api/v1/orders", json=ORDER)
        assert response.status_code == 201  # the outbox carries it once Redis is back
    assert RATE_LIMIT_UNCHECKED._value.get() == before + 1
