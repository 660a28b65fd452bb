"""What one event-stream client can make a gateway hold, against a real ``orderflow api``.

What these tests prove:
* a client that opens ``/api/v1/menu/events`` and never reads is disconnected once a
  write has waited ``ORDERFLOW_SSE_SEND_TIMEOUT_SECONDS`` (1 s here): the process's
  open-stream gauge drops by one while the client still has not read a byte, a reading
  client meanwhile gets every change, and new streams are served (the order stream
  shares the same writer, ``orderflow.web.sse.EventStream``);
* at most ``ORDERFLOW_SSE_MAX_STREAMS`` streams are open per process: one more gets a
  503 problem with ``Retry-After`` before any stream starts, and a stream whose client
  left frees its place (noticed at the next heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import pytest

from orderflow.agents.stock_events import announce_stock_change
from orderflow.models.documents import MenuItem
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store
from orderflow.runtime import App
from tests.web.api_process import ApiProcess, metric_value, sqlite_url
from tests.web.sse_client import RECEIVE_GUARD, ServerEvent, open_events

BULK_ITEMS = 3000  # ~130 KB per stock event: a few events fill any socket buffer
CHANGES = 200  # at most; the loop ends once the client is dropped (~5 MB buffered here)
GATEWAY_ENV = {
    "ORDERFLOW_SSE_SEND_TIMEOUT_SECONDS": "1",
    "ORDERFLOW_SSE_MAX_STREAMS": "3",
    "ORDERFLOW_MENU_REFRESH_INTERVAL_SECONDS": "0",
    # A client that left is noticed at the next write (see docs/realtime.md).
    "ORDERFLOW_SSE_HEARTBEAT_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_url(tmp_path_factory.mktemp("stream-bounds-store"))


async def wait_for_streams(client: httpx.AsyncClient, expected: float) -> None:
    """Poll the gauge until it shows ``expected`` (a guard of RECEIVE_GUARD seconds)."""
    async with asyncio.timeout(RECEIVE_GUARD):
        while await metric_value(client, "orderflow_sse_streams") != expected:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)


def never_reading_client(port: int) -> socket.socket:
    """Opens the menu stream with a tiny receive window and then reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/menu/events HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock


async def test_a_client_that_never_reads_is_dropped(
    events_gateway: ApiProcess, store: Store, publisher: App
) -> None:
    bulk = [
        MenuItem(id=f"bulk-{i:04d}", name=f"Bulk {i}", category="bulk", price=100, stock=1000)
        for i in range(BULK_ITEMS)
    ]
    await store.seed_menu(bulk)
    item = DEMO_MENU[0].id
    url = f"{events_gateway.url}/api/v1/menu/events"
    async with (
        httpx.AsyncClient(base_url=events_gateway.url, timeout=RECEIVE_GUARD) as client,
        open_events(url) as watcher,  # a client that reads: each change made its event
    ):
        await watcher.next()
        sock = never_reading_client(events_gateway.port)
        try:
            await wait_for_streams(client, 2)
            for change in range(CHANGES):  # each change: one ~130 KB event for each client
                level = 10_000 + change
                await store.set_stock(item, level)
                assert await announce_stock_change(publisher, [item], source="test")
                while stock_of(await watcher.next(), item) != level:
                    pass
                if await metric_value(client, "orderflow_sse_streams") == 1:
                    break
            await wait_for_streams(client, 1)  # dropped, though it never read a byte
        finally:
            sock.close()
        # The reading client was served all along, and the process serves new streams.
        async with open_events(url) as reader:
            event = await reader.next()
    assert event.event == "stock"
    assert len(event.json()["items"]) == len(DEMO_MENU) + BULK_ITEMS
    assert stock_of(event, item) == level


def stock_of(event: ServerEvent, item_id: str) -> int:
    levels = {entry["id"]: entry["stock"] for entry in event.json()["items"]}
    return int(levels[item_id])


async def test_open_streams_are_capped_per_process(events_gateway: ApiProcess) -> None:
    url = f"{events_gateway.url}/api/v1/menu/events"
    async with httpx.AsyncClient(base_url=events_gateway.url, timeout=RECEIVE_GUARD) as client:
        await wait_for_streams(client, 0)
        async with contextlib.AsyncExitStack() as stack:
            readers = [await stack.enter_async_context(open_events(url)) for _ in range(3)]
            for reader in readers:
                assert (await reader.next()).event == "stock"
            refused = await client.get(url)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["type"] == "urn:orderflow:problem:stream-unavailable"
        await wait_for_streams(client, 0)
        async with open_events(url) as reader:  # a closed stream freed its place
            assert (await reader.next()).event == "stock"
