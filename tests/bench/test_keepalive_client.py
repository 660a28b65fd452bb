"""benchmarks/keepalive.py against the real app: what load.py's figures rest on.

The client is only worth its CPU savings if it reads the answers right: the
status, the JSON body, a problem+json 4xx body (and the connection stays usable
after it), keep-alive reuse (one TCP connection, the same local port, for
several requests), and a clear refusal of an answer it cannot frame (a chunked
stream) instead of a hang or a misread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.keepalive import ConnectionPool, KeepAliveConnection, encode_request
from benchmarks.rawhttp import HTTPProtocolError
from tests.web.conftest import LiveApi, make_settings, running_api, seeded_store

ORDER = b'{"lines": [{"item_id": "margherita", "quantity": 1}]}'
UNKNOWN_ITEM = b'{"lines": [{"item_id": "no-such-pizza", "quantity": 1}]}'


@pytest.fixture
async def app(redis_client: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveApi]:
    store_url = await seeded_store(tmp_path)
    settings = make_settings(redis_url, store_url, benchmark_noop_route=True)
    async for live in running_api(settings):
        yield live


def target(live: LiveApi) -> tuple[str, int]:
    host, port = live.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_an_order_is_created_and_its_201_body_read(app: LiveApi) -> None:
    host, port = target(app)
    pool = ConnectionPool(host, port)
    try:
        answer = await pool.request(encode_request("POST", "/api/v1/orders", host, ORDER))
    finally:
        await pool.close()
    assert answer.status == 201
    assert answer.headers["content-type"].startswith("application/json")
    assert int(answer.headers["content-length"]) == len(answer.body)
    order = answer.json()
    stored = await app.store.recent_orders(10)
    assert [o.id for o in stored] == [order["id"]]
    assert order["status"] == "created"


async def test_one_connection_carries_every_request_of_a_closed_loop(app: LiveApi) -> None:
    host, port = target(app)
    connection = await KeepAliveConnection.open(host, port)
    raw = encode_request("POST", "/api/v1/benchmark/noop", host, ORDER)
    try:
        ports = set()
        for _ in range(5):
            answer = await connection.request(raw)
            assert (answer.status, answer.json()) == (200, {"ok": True, "bytes": len(ORDER)})
            ports.add(connection.local_port)
            assert connection.usable()
    finally:
        await connection.close()
    assert connection.requests == 5
    assert len(ports) == 1

    pool = ConnectionPool(host, port)
    try:
        await pool.fill(2)
        results = await asyncio.gather(*(pool.request(raw) for _ in range(2)))
        for _ in range(3):
            results.append(await pool.request(raw))
    finally:
        await pool.close()
    assert [r.status for r in results] == [200] * 5
    assert pool.opened == 2  # the three sequential requests reused an idle connection


async def test_a_request_with_no_idle_connection_opens_one_instead_of_waiting(
    app: LiveApi,
) -> None:
    host, port = target(app)
    pool = ConnectionPool(host, port)
    raw = encode_request("POST", "/api/v1/benchmark/noop", host, ORDER)
    try:
        await pool.fill(1)
        answers = await asyncio.gather(*(pool.request(raw) for _ in range(4)))
    finally:
        await pool.close()
    assert [a.status for a in answers] == [200] * 4
    assert pool.opened == 4


async def test_a_problem_body_is_read_and_the_connection_stays_usable(app: LiveApi) -> None:
    host, port = target(app)
    connection = await KeepAliveConnection.open(host, port)
    try:
        missing = await connection.request(
            encode_request("POST", "/api/v1/orders", host, UNKNOWN_ITEM)
        )
        malformed = await connection.request(
            encode_request("POST", "/api/v1/benchmark/noop", host, b"{not json")
        )
        after = await connection.request(encode_request("POST", "/api/v1/orders", host, ORDER))
    finally:
        await connection.close()
    assert missing.status == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    problem = missing.json()
    assert problem["status"] == 404 and "no-such-pizza" in problem["detail"]
    assert malformed.status == 400
    assert malformed.json()["type"].endswith("malformed-json")
    assert after.status == 201 and connection.requests == 3
    assert [o.id for o in await app.store.recent_orders(10)] == [after.json()["id"]]


async def test_an_answer_it_cannot_frame_is_refused_not_misread(app: LiveApi) -> None:
    # The SSE stream is the app's one chunked answer; the benchmarks never read it.
    host, port = target(app)
    created = await app.client.post(
        "/api/v1/orders", content=ORDER, headers={"Content-Type": "application/json"}
    )
    order_id = created.json()["id"]
    connection = await KeepAliveConnection.open(host, port)
    try:
        with pytest.raises(HTTPProtocolError, match="chunked answer"):
            async with asyncio.timeout(30):
                await connection.request(
                    encode_request("GET", f"/api/v1/orders/{order_id}/events", host)
                )
    finally:
        await connection.close()
    assert not connection.usable()
