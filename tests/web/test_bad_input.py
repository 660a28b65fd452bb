"""Bad requests: each gets the right 4xx with a problem+json body, never a 5xx,
and no stock moves.

One table, one row per way a client can get it wrong: broken JSON, wrong
types, out-of-range quantities, too many or duplicate lines, unknown or
malformed ids, operator-shaped values where an id belongs (``{"$gt": ""}``),
an oversized body, a wrong content type, methods a path does not allow, and
bad WebSocket paths.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import websockets

from orderflow.models.store import opened_store
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.web.tracking import CLOSE_MALFORMED_ID, CLOSE_UNKNOWN_ORDER
from tests.web.conftest import LiveApi, make_settings, running_api, seeded_store

ORDERS = "/api/v1/orders"
JSON = {"content-type": "application/json"}
VALID_ORDER_ID = "0" * 32
LOW_STOCK = 3  # tiramisu's stock in this module's store


@dataclass(frozen=True)
class Bad:
    name: str
    status: int
    method: str = "POST"
    path: str = ORDERS
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    detail_contains: str = ""


def order(*lines: Any, **extra: Any) -> bytes:
    return json.dumps({"lines": list(lines), **extra}).encode()


def line(item_id: Any = "margherita", quantity: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"item_id": item_id, "quantity": quantity, **extra}


TABLE: list[Bad] = [
    # not JSON at all -> 400
    Bad("malformed-json", 400, body=b'{"lines": [', detail_contains="not valid JSON"),
    Bad("empty-body", 400, body=b"", detail_contains="empty"),
    Bad("not-utf8", 400, body=b"\xff\xfe\xfd"),
    Bad("trailing-garbage", 400, body=order(line()) + b"}}"),
    Bad("deeply-nested", 400, body=b"[" * 3000 + b"]" * 3000),
    # JSON, but not an order -> 422
    Bad("top-level-array", 422, body=b"[]", detail_contains="must be an object"),
    Bad("top-level-null", 422, body=b"null"),
    Bad("top-level-string", 422, body=b'"margherita"'),
    Bad("missing-lines", 422, body=b"{}", detail_contains="lines: is required"),
    Bad("lines-not-array", 422, body=b'{"lines": {"item_id": "margherita"}}'),
    Bad("empty-order", 422, body=order(), detail_contains="at least one line"),
    Bad("quantity-zero", 422, body=order(line(quantity=0)), detail_contains="at least 1"),
    Bad("quantity-negative", 422, body=order(line(quantity=-3)), detail_contains="at least 1"),
    Bad("quantity-huge", 422, body=order(line(quantity=10**30)), detail_contains="allowed per"),
    Bad("quantity-over-limit", 422, body=order(line(quantity=11)), detail_contains="10"),
    Bad("quantity-string", 422, body=order(line(quantity="2")), detail_contains="integer"),
    Bad("quantity-float", 422, body=order(line(quantity=1.5)), detail_contains="integer"),
    Bad("quantity-bool", 422, body=order(line(quantity=True)), detail_contains="boolean"),
    Bad("quantity-null", 422, body=order(line(quantity=None))),
    Bad("quantity-missing", 422, body=order({"item_id": "margherita"}), detail_contains="required"),
    Bad("item-id-number", 422, body=order(line(item_id=5)), detail_contains="must be a string"),
    Bad(
        "item-id-operator-gt",
        422,
        body=order(line(item_id={"$gt": ""})),
        detail_contains="lines[0].item_id: must be a string, got an object",
    ),
    Bad("item-id-operator-ne", 422, body=order(line(item_id={"$ne": None}))),
    Bad("item-id-operator-regex", 422, body=order(line(item_id={"$regex": ".*"}))),
    Bad("item-id-array", 422, body=order(line(item_id=["margherita"])), detail_contains="array"),
    Bad("item-id-uppercase", 422, body=order(line(item_id="MARGHERITA")), detail_contains="slug"),
    Bad("item-id-sql", 422, body=order(line(item_id="x'; DROP TABLE menu; --"))),
    Bad("item-id-empty", 422, body=order(line(item_id=""))),
    Bad("item-id-too-long", 422, body=order(line(item_id="a" * 65))),
    Bad(
        "too-many-lines",
        422,
        body=order(*[line(item_id=f"dish-{i}") for i in range(51)]),
        detail_contains="at most 50 lines",
    ),
    Bad(
        "duplicate-lines",
        422,
        body=order(line(quantity=1), line(quantity=2)),
        detail_contains="appears in lines 0 and 1",
    ),
    Bad("extra-top-level-field", 422, body=order(line(), coupon="FREE"), detail_contains="coupon"),
    Bad("operator-top-level-key", 422, body=order(line(), **{"$where": "1 == 1"})),
    Bad("extra-line-field", 422, body=order(line(price=0)), detail_contains="price"),
    Bad(
        "idempotency-key-too-long",
        400,
        body=order(line()),
        headers={**JSON, "Idempotency-Key": "k" * 300},
    ),
    # store refusals: well-formed, but not possible
    Bad(
        "unknown-item",
        404,
        body=order(line(item_id="no-such-dish")),
        detail_contains="no-such-dish",
    ),
    Bad(
        "unknown-item-among-known",
        404,
        body=order(line(item_id="margherita"), line(item_id="no-such-dish")),
    ),
    Bad(
        "out-of-stock",
        409,
        body=order(line(item_id="tiramisu", quantity=LOW_STOCK + 1)),
        detail_contains=f"Only {LOW_STOCK} of",
    ),
    # transport-level refusals
    Bad("oversized-body", 413, body=order(line(item_id="margherita", pad="x" * 20_000))),
    Bad("text-plain", 415, body=order(line()), headers={"content-type": "text/plain"}),
    Bad("no-content-type", 415, body=order(line()), headers={}),
    Bad(
        "form-encoded",
        415,
        body=b"item_id=margherita&quantity=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    # ids and paths
    Bad("order-id-malformed", 404, "GET", f"{ORDERS}/not-an-id", headers={}),
    Bad("order-id-unknown", 404, "GET", f"{ORDERS}/{VALID_ORDER_ID}", headers={}),
    Bad("order-id-operator", 404, "GET", f"{ORDERS}/%7B%22%24gt%22%3A%22%22%7D", headers={}),
    Bad("order-id-traversal", 404, "GET", f"{ORDERS}/..%2F..%2Fetc%2Fpasswd", headers={}),
    Bad("unknown-path", 404, "GET", "/api/v1/nothing-here", headers={}),
    # methods
    Bad("put-orders", 405, "PUT", ORDERS, body=order(line())),
    Bad("delete-menu", 405, "DELETE", "/api/v1/menu", headers={}),
    Bad("patch-order", 405, "PATCH", f"{ORDERS}/{VALID_ORDER_ID}", body=b"{}"),
    Bad("get-orders-collection", 405, "GET", ORDERS, headers={}),
    # WebSocket paths over plain HTTP (the socket's own close codes are WEB-REALTIME's tests)
    Bad("ws-no-order-id", 404, "GET", "/ws/v1/order-tracking/", headers={}),
    Bad("ws-extra-segment", 404, "GET", f"/ws/v1/order-tracking/{VALID_ORDER_ID}/x", headers={}),
    Bad("ws-wrong-version", 404, "GET", f"/ws/v2/order-tracking/{VALID_ORDER_ID}", headers={}),
    Bad("ws-without-upgrade", 426, "GET", f"/ws/v1/order-tracking/{VALID_ORDER_ID}", headers={}),
    Bad("ws-post", 405, "POST", f"/ws/v1/order-tracking/{VALID_ORDER_ID}", body=b"{}"),
]

# Real WebSocket handshakes on bad ids: closed with the gateway's documented codes.
WS_CASES = [
    ("ws-malformed-id", "not-an-order", CLOSE_MALFORMED_ID),
    ("ws-uppercase-id", "A" * 32, CLOSE_MALFORMED_ID),
    ("ws-id-too-long", "0" * 33, CLOSE_MALFORMED_ID),
    ("ws-operator-id", "%7B%22%24gt%22%3A%22%22%7D", CLOSE_MALFORMED_ID),
    ("ws-unknown-order", VALID_ORDER_ID, CLOSE_UNKNOWN_ORDER),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def table_api(
    redis_server: LocalRedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveApi]:
    store_url = await seeded_store(tmp_path_factory.mktemp("bad-input"))
    async with opened_store(store_url) as store:  # below the line cap, for "out-of-stock"
        await store.set_stock("tiramisu", LOW_STOCK)
    async for live in running_api(make_settings(redis_server.url, store_url), role="all"):
        yield live


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 30
    assert len({case.name for case in TABLE}) == len(TABLE)


# One server and one store for the whole table: every row must leave the stock
# as it found it, so sharing them makes the "nothing changed" check cumulative.
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
async def test_bad_request_gets_problem_and_changes_nothing(table_api: LiveApi, case: Bad) -> None:
    api = table_api
    stock_before = await api.stock()
    orders_before = await api.store.count_orders()

    response = await api.client.request(
        case.method, case.path, content=case.body, headers=case.headers
    )

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == case.status
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    assert problem["type"]
    assert case.detail_contains in problem["detail"], problem["detail"]
    assert response.headers["x-correlation-id"] == problem["correlation_id"]

    assert await api.stock() == stock_before
    assert await api.store.count_orders() == orders_before


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("order_id", "close_code"),
    [(order_id, code) for _, order_id, code in WS_CASES],
    ids=[name for name, _, _ in WS_CASES],
)
async def test_bad_websocket_id_is_closed_with_its_code(
    table_api: LiveApi, order_id: str, close_code: int
) -> None:
    stock_before = await table_api.stock()
    url = table_api.base_url.replace("http://", "ws://") + f"/ws/v1/order-tracking/{order_id}"
    async with websockets.connect(url, open_timeout=30) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == close_code
    assert closed.value.rcvd.reason
    assert await table_api.stock() == stock_before


# Requests httpx will not send: broken at the HTTP level, answered by Sanic's parser.
_POST_HEAD = b"POST /api/v1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
RAW_CASES = [
    ("non-ascii-url", b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("garbage-request-line", b"BLAH\r\n\r\n", 400),
    ("huge-header", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n", 413),
    ("bad-content-length", _POST_HEAD + b"Content-Length: abc\r\n\r\n", 400),
    ("bad-chunk-size", _POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (
        "oversized-chunked-body",
        _POST_HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n4000\r\n"
        + b"a" * 0x4000
        + b"\r\n10\r\n"
        + b"a" * 16
        + b"\r\n0\r\n\r\n",
        413,
    ),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("raw", "status"),
    [(raw, status) for _, raw, status in RAW_CASES],
    ids=[name for name, _, _ in RAW_CASES],
)
async def test_broken_http_gets_problem(table_api: LiveApi, raw: bytes, status: int) -> None:
    stock_before = await table_api.stock()
    host, port = table_api.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers["content-length"])
        payload = await asyncio.wait_for(reader.readexactly(length), timeout=30)
    finally:
        writer.close()
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(payload)
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert await table_api.stock() == stock_before
