"""Fixtures for the HTTP tests: a seeded SQLite store and the real app on a real socket.

``api`` serves ``create_app(...)`` with ``app.create_server`` on a free
loopback port inside the test's event loop (full Sanic lifecycle: listeners
open a real Redis client and the store), and talks to it with httpx over TCP.
Tests that need several processes (multi-worker metrics) or a blocking
client (schemathesis) start ``orderflow api`` as a subprocess instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic

from orderflow.agents.settings import Settings
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, open_store
from orderflow.runtime.localserver import LocalRedisServer, free_port
from orderflow.web.app import create_app
from tests.web.api_process import ApiProcess, running_process

# Each test builds a fresh app under the same name.
Sanic.test_mode = True


async def seeded_store(directory: Path) -> str:
    """Create a SQLite store under ``directory`` seeded with the demo menu; return its URL."""
    url = f"sqlite:///{directory}/orderflow.db"
    store = await open_store(url)
    try:
        await store.seed_menu(DEMO_MENU)
    finally:
        await store.close()
    return url


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    return await seeded_store(tmp_path)


@dataclass
class LiveApi:
    app: Sanic
    base_url: str
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        store: Store = self.app.ctx.store
        return store

    async def stock(self) -> dict[str, int]:
        return {item.id: item.stock for item in await self.store.list_menu()}


# The suite places hundreds of orders from one address (127.0.0.1) into one Redis that
# every test shares, so the per-client order rate limit is lifted here, explicitly, by
# its one setting; tests/hardening/test_rate_limit.py turns it on to test it.
NO_RATE_LIMIT = {"order_rate_limit_per_minute": 0}
NO_RATE_LIMIT_ENV = {"ORDERFLOW_ORDER_RATE_LIMIT_PER_MINUTE": "0"}


def make_settings(redis_url: str, store_url: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, store_url=store_url, **{**NO_RATE_LIMIT, **overrides})


async def serve(app: Sanic) -> AsyncIterator[str]:
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.before_stop()
        closing = server.close()
        if closing is not None:
            await closing
        await server.after_stop()


@pytest.fixture
def api_settings(redis_url: str, store_url: str) -> Settings:
    return make_settings(redis_url, store_url)


async def running_api(settings: Settings, role: str = "api") -> AsyncIterator[LiveApi]:
    app = create_app(settings, role=role)  # type: ignore[arg-type]
    async for base_url in serve(app):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield LiveApi(app, base_url, client)


@pytest.fixture
async def api(redis_client: Any, api_settings: Settings) -> AsyncIterator[LiveApi]:
    """The app with its REST routes, served on loopback; Redis flushed first."""
    async for live in running_api(api_settings):
        yield live


@pytest.fixture
def api_process_factory(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """Start ``orderflow api ARGS`` subprocesses (healthy when returned); stopped at teardown."""
    started: list[ApiProcess] = []

    def start(redis_url: str, store_url: str, *args: str, **env: str) -> ApiProcess:
        process = ApiProcess(
            redis_url=redis_url,
            store_url=store_url,
            log_path=tmp_path / f"api-{len(started)}.log",
            args=args,
            extra_env=env,
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


async def eventually_async(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def events_gateway(
    request: pytest.FixtureRequest,
    redis_server: LocalRedisServer,
    store_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    """One ``orderflow api`` for the module, on its ``store_url``, with the module's
    ``GATEWAY_ENV`` (the event-stream tests shorten heartbeats and timeouts with it)."""
    env: dict[str, str] = getattr(request.module, "GATEWAY_ENV", {})
    log = tmp_path_factory.mktemp("gateway-logs") / "gateway.log"
    with running_process(redis_server.url, store_url, log, env) as process:
        yield process
