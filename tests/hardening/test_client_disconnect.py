"""Issue 9, point 8: clients that stop listening, or stop sending, before their answer.

Found: a POST followed by a TCP half-close (``shutdown(SHUT_WR)``) got no response in
5 of 5 tries, and the order was still created in 2. What holds now, against the real
``orderflow api`` command:

* a client that half-closes after its request still gets its answer (201, or the
  503 ``store-unavailable`` when the store is locked past the deadline);
* a client that disconnects before its answer may or may not have an order, and a
  retry with the same ``Idempotency-Key`` tells which: the first order replayed, or
  a new one -- exactly one order per key, never two.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from orderflow.models.store import opened_store
from tests.hardening.conftest import ORDERS, STORE_DEADLINE, file_locked
from tests.web.api_process import ApiProcess

QUANTITY = 2


def raw_post(key: str, *, quantity: int = QUANTITY) -> bytes:
    body = json.dumps({"lines": [{"item_id": "margherita", "quantity": quantity}]}).encode()
    head = (
        f"POST {ORDERS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def send_and_half_close(api: ApiProcess, request: bytes) -> bytes:
    """Send the request, shut our sending side, read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def send_and_close(api: ApiProcess, request: bytes, *, reset: bool) -> None:
    """Send the request and close the connection without reading anything: with a FIN
    (to the server, the same as a half-close), or with a reset (``SO_LINGER`` 0)."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as conn:
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sendall(request)


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body)


@pytest.fixture
def api(
    api_process_factory: Callable[..., ApiProcess],
    redis_client: aioredis.Redis,
    redis_url: str,
    store_url: str,
) -> ApiProcess:
    """``orderflow api`` (the real command, with its protocol) and a short store deadline."""
    return api_process_factory(
        redis_url, store_url, ORDERFLOW_STORE_DEADLINE_SECONDS=str(STORE_DEADLINE)
    )


async def post_order(api: ApiProcess, key: str) -> httpx.Response:
    """The client's retry: the same order with the same ``Idempotency-Key``."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        return await client.post(
            ORDERS,
            json={"lines": [{"item_id": "margherita", "quantity": QUANTITY}]},
            headers={"Idempotency-Key": key},
        )


async def orders_and_stock(store_url: str) -> tuple[int, int]:
    async with opened_store(store_url) as store:
        stock = {item.id: item.stock for item in await store.list_menu()}
        return await store.count_orders(), stock["margherita"]


async def test_a_half_closed_client_gets_its_answer(api: ApiProcess, store_url: str) -> None:
    _, stock_before = await orders_and_stock(store_url)
    for attempt in range(5):
        status, headers, order = parse(send_and_half_close(api, raw_post(f"half-{attempt}")))
        assert status == 201, order
        assert headers["connection"] == "close"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            retry = await client.get(headers["location"])
        assert retry.status_code == 200 and retry.json()["id"] == order["id"]
    assert await orders_and_stock(store_url) == (5, stock_before - 5 * QUANTITY)


async def test_a_half_closed_client_is_told_503_and_nothing_is_ordered(
    api: ApiProcess, store_url: str
) -> None:
    _, stock_before = await orders_and_stock(store_url)
    with file_locked(store_url):  # held past the deadline, from another process
        status, headers, problem = parse(send_and_half_close(api, raw_post("locked")))
    assert status == 503, problem
    assert headers["retry-after"] == "1"
    assert problem["type"] == "urn:orderflow:problem:store-unavailable"
    assert await orders_and_stock(store_url) == (0, stock_before)
    retried = await post_order(api, "locked")
    assert retried.status_code == 201, retried.text
    assert "idempotency-replayed" not in retried.headers  # the 503 ordered nothing
    assert await orders_and_stock(store_url) == (1, stock_before - QUANTITY)


async def test_a_client_gone_before_its_answer_learns_the_outcome_by_retrying(
    api: ApiProcess, store_url: str
) -> None:
    _, stock_before = await orders_and_stock(store_url)
    for attempt in range(5):
        key = f"gone-{attempt}"
        send_and_close(api, raw_post(key), reset=attempt % 2 == 1)
        # Exactly 0 or 1 order for this key so far; the retry says which, and
        # leaves exactly one.
        orders_so_far, _ = await orders_and_stock(store_url)
        assert orders_so_far - attempt in (0, 1)
        retried = await post_order(api, key)
        assert retried.status_code == 201, retried.text
        assert await orders_and_stock(store_url) == (
            attempt + 1,
            stock_before - (attempt + 1) * QUANTITY,
        )


async def test_a_client_reset_while_the_store_waits_gets_no_order_later(
    api: ApiProcess, store_url: str
) -> None:
    """The "order still created" half of the finding: the handler of a vanished client is
    cancelled (or runs out of time), the store abandons its transaction, and releasing the
    lock afterwards commits nothing."""
    _, stock_before = await orders_and_stock(store_url)
    with file_locked(store_url):
        send_and_close(api, raw_post("reset-while-locked"), reset=True)
        # Answered after the vanished request's deadline: it was abandoned by then.
        refused = await post_order(api, "probe-while-locked")
    assert refused.status_code == 503, refused.text
    retried = await post_order(api, "reset-while-locked")
    assert retried.status_code == 201, retried.text
    assert "idempotency-replayed" not in retried.headers
    assert await orders_and_stock(store_url) == (1, stock_before - QUANTITY)
