"""The operator API (``/api/v1/ops/``) on a real app, Valkey and SQLite store.

What an operator and a security reviewer expect: nothing exists without a token;
every call needs the right bearer token (401 problem+json with ``WWW-Authenticate``
otherwise), the token never shows up in a log line or an error body; the views are
live; every change is an audit line naming a fingerprint of the token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.runtime import Record
from orderflow.runtime.deadletter import DEAD_LETTERS, dead_letter_fields
from orderflow.runtime.envelope import Envelope
from orderflow.web.ops.auth import fingerprint
from tests.web.conftest import LiveApi, make_settings, running_api

TOKEN = "s3cret-operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def ops(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    settings = make_settings(redis_url, store_url, operator_token=TOKEN)
    async for live in running_api(settings):
        yield live


class Ping(Record, event_type="ops.ping.v1"):
    n: int


async def add_dead_letter(redis: aioredis.Redis, stream: str = "orders-stream") -> str:
    """A dead letter as the runtime writes one: its raw entry is a real envelope."""
    envelope = Envelope.new(Ping(n=1), source="test")
    fields = dead_letter_fields(
        stream=stream,
        entry_id="1-0",
        group="delivery-group",
        consumer="host-1",
        raw=envelope.to_fields(),
        error_type="RuntimeError",
        error_message="boom",
        delivery_count=5,
    )
    entry_id = await redis.xadd(DEAD_LETTERS, fields)  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def test_without_a_token_setting_there_is_no_console(api: LiveApi) -> None:
    assert (await api.client.get("/ops")).status_code == 404
    response = await api.client.get("/api/v1/ops/streams", headers=AUTH)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="orderflow-ops"'),
        ({"Authorization": "Basic b3BzOnNlY3JldA=="}, 'Bearer realm="orderflow-ops"'),
        ({"Authorization": "Bearer"}, 'Bearer realm="orderflow-ops"'),
        ({"Authorization": "Bearer wrong"}, 'Bearer realm="orderflow-ops", error="invalid_token"'),
        (
            {"Authorization": f"Bearer {TOKEN}x"},
            'Bearer realm="orderflow-ops", error="invalid_token"',
        ),
    ],
)
async def test_every_ops_call_needs_the_token(
    ops: LiveApi, headers: dict[str, str], challenge: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for method, path in [
        ("GET", "/api/v1/ops/streams"),
        ("GET", "/api/v1/ops/dead-letters"),
        ("PUT", "/api/v1/ops/menu/margherita/stock"),
        ("POST", "/api/v1/ops/dead-letters/purge"),
    ]:
        response = await ops.client.request(method, path, headers=headers, json={"stock": 1})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == challenge
        body = response.json()
        assert body["type"] == "urn:orderflow:problem:unauthorized" and body["correlation_id"]
        assert TOKEN not in response.text
    assert (await ops.stock())["margherita"] == 40  # nothing changed
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    refused = [r for r in caplog.records if r.name == "orderflow.ops"]
    assert len(refused) == 4 and all("refused" in r.getMessage() for r in refused)


async def test_streams_and_consumers_are_live(ops: LiveApi, redis_client: Any) -> None:
    await redis_client.xadd("orders-stream", {"k": "v"})
    await redis_client.xgroup_create("orders-stream", "delivery-group", id="0")
    await redis_client.xreadgroup("delivery-group", "host-42", {"orders-stream": ">"}, count=1)
    await add_dead_letter(redis_client)

    streams = (await ops.client.get("/api/v1/ops/streams", headers=AUTH)).json()
    (orders,) = [s for s in streams["streams"] if s["name"] == "orders-stream"]
    assert orders["length"] == 1
    (group,) = orders["groups"]
    assert (group["name"], group["pending"], group["consumers"]) == ("delivery-group", 1, 1)
    assert group["oldest_pending_age_ms"] is not None
    assert streams["dead_letters"] == 1

    consumers = (await ops.client.get("/api/v1/ops/consumers", headers=AUTH)).json()
    assert [(c["stream"], c["group"], c["name"], c["pending"]) for c in consumers["consumers"]] == [
        ("orders-stream", "delivery-group", "host-42", 1)
    ]
    assert consumers["consumers"][0]["idle_ms"] >= 0


async def test_dead_letters_list_show_replay_purge_each_audited(
    ops: LiveApi, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orderflow.audit")
    first, second, third = [await add_dead_letter(redis_client) for _ in range(3)]

    listed = (await ops.client.get("/api/v1/ops/dead-letters", headers=AUTH)).json()
    assert [d["id"] for d in listed["dead_letters"]] == [third, second, first]  # newest first
    assert listed["total"] == 3
    shown = (await ops.client.get(f"/api/v1/ops/dead-letters/{first}", headers=AUTH)).json()
    assert shown["error_type"] == "RuntimeError" and shown["stream"] == "orders-stream"

    replayed = await ops.client.post(f"/api/v1/ops/dead-letters/{first}/replay", headers=AUTH)
    assert replayed.status_code == 200 and replayed.json()["stream"] == "orders-stream"
    entries = await redis_client.xrange("orders-stream")
    assert len(entries) == 1 and entries[0][1][b"event_type"] == b"ops.ping.v1"

    assert (
        await ops.client.delete(f"/api/v1/ops/dead-letters/{second}", headers=AUTH)
    ).status_code == 204
    missing = await ops.client.delete(f"/api/v1/ops/dead-letters/{second}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["type"].endswith("dead-letter-not-found")
    assert (
        await ops.client.get("/api/v1/ops/dead-letters/nonsense", headers=AUTH)
    ).status_code == 404

    refused = await ops.client.post("/api/v1/ops/dead-letters/purge", headers=AUTH, json={})
    assert refused.status_code == 422
    purged = await ops.client.post(
        "/api/v1/ops/dead-letters/purge", headers=AUTH, json={"all": True}
    )
    assert purged.json() == {"purged": 1}
    assert await redis_client.xlen(DEAD_LETTERS) == 0

    audit = [r for r in caplog.records if r.name == "orderflow.audit"]
    assert [r.audit_action for r in audit] == [  # type: ignore[attr-defined]
        "dead-letter.replay",
        "dead-letter.purge",
        "dead-letter.purge-many",
    ]
    assert all(r.audit_operator == fingerprint(TOKEN) for r in audit)  # type: ignore[attr-defined]
    assert all(TOKEN not in r.getMessage() for r in audit)


async def test_replay_all_of_one_stream(ops: LiveApi, redis_client: Any) -> None:
    await add_dead_letter(redis_client, "orders-stream")
    await add_dead_letter(redis_client, "deliveries-stream")
    response = await ops.client.post(
        "/api/v1/ops/dead-letters/replay", headers=AUTH, json={"stream": "deliveries-stream"}
    )
    assert response.json() == {"replayed": 1, "not_replayable": []}
    assert await redis_client.xlen("deliveries-stream") == 1
    assert not await redis_client.exists("orders-stream")
    assert await redis_client.xlen(DEAD_LETTERS) == 1


async def test_a_topic_name_finds_and_replays_the_dead_letters_of_its_partitions(
    ops: LiveApi, redis_client: Any
) -> None:
    """``stream=orders-stream`` stands for the topic: its partitions ``orders-stream.p<i>``
    too (ORDERFLOW_TOPIC_PARTITIONS > 1), not a stream that only starts with the name."""
    for stream in ("orders-stream.p0", "orders-stream.p2", "orders-stream.pX", "deliveries-stream"):
        await add_dead_letter(redis_client, stream)
    listed = await ops.client.get(
        "/api/v1/ops/dead-letters", headers=AUTH, params={"stream": "orders-stream"}
    )
    assert {d["stream"] for d in listed.json()["dead_letters"]} == {
        "orders-stream.p0",
        "orders-stream.p2",
    }
    response = await ops.client.post(
        "/api/v1/ops/dead-letters/replay", headers=AUTH, json={"stream": "orders-stream"}
    )
    assert response.json() == {"replayed": 2, "not_replayable": []}
    assert await redis_client.xlen("orders-stream.p0") == 1  # each back on its own partition
    assert await redis_client.xlen("orders-stream.p2") == 1
    assert not await redis_client.exists("orders-stream")
    assert await redis_client.xlen(DEAD_LETTERS) == 2


async def test_stock_is_set_and_refilled_and_bad_bodies_change_nothing(ops: LiveApi) -> None:
    url = "/api/v1/ops/menu/margherita/stock"
    assert (await ops.client.put(url, headers=AUTH, json={"stock": 3})).json() == {
        "item_id": "margherita",
        "stock": 3,
    }
    assert (await ops.stock())["margherita"] == 3
    for body, status in [
        (b"{", 400),
        (b"", 400),
        (b'{"stock": -1}', 422),
        (b'{"stock": "7"}', 422),
        (b'{"stock": 7, "extra": 1}', 422),
        (b'{"stock": 1.5}', 422),
        (b'{"stock": 1, "stock": 500}', 422),
    ]:
        response = await ops.client.put(
            url, headers={**AUTH, "content-type": "application/json"}, content=body
        )
        assert response.status_code == status, body
        assert response.headers["content-type"] == "application/problem+json"
    assert (await ops.stock())["margherita"] == 3
    unknown = await ops.client.put(
        "/api/v1/ops/menu/no-such-item/stock", headers=AUTH, json={"stock": 1}
    )
    assert unknown.status_code == 404
    assert (
        await ops.client.get("/api/v1/ops/menu/margherita/stock", headers=AUTH)
    ).status_code == 405

    refilled = await ops.client.post("/api/v1/ops/menu/refill", headers=AUTH)
    assert refilled.json()["refilled"] == len(await ops.store.list_menu())
    assert (await ops.stock())["margherita"] == 40
    await ops.client.post("/api/v1/ops/menu/refill", headers=AUTH, json={"stock": 5})
    assert set((await ops.stock()).values()) == {5}


async def test_find_an_order(ops: LiveApi) -> None:
    placed = await ops.client.post(
        "/api/v1/orders", json={"lines": [{"item_id": "margherita", "quantity": 2}]}
    )
    order_id = placed.json()["id"]
    found = await ops.client.get(f"/api/v1/ops/orders/{order_id}", headers=AUTH)
    assert found.status_code == 200 and found.json()["lines"][0]["quantity"] == 2
    missing = await ops.client.get("/api/v1/ops/orders/" + "0" * 32, headers=AUTH)
    assert missing.status_code == 404
    unauthenticated = await ops.client.get(f"/api/v1/ops/orders/{order_id}")
    assert unauthenticated.status_code == 401


async def test_the_page_is_served_when_the_console_is_on(ops: LiveApi) -> None:
    page = await ops.client.get("/ops")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/ops.js">' in page.text
    assert (await ops.client.get("/static/js/ops.js")).status_code == 200
    assert TOKEN not in page.text
