"""Fixtures for the HTTP tests: a seeded SQLite store and the real app on a real socket.

``api`` serves ``create_app(...)`` with ``app.create_server`` on a free
loopback port inside the test's event loop (full Sanic lifecycle: listeners
open a real Redis client and the store), and talks to it with httpx over TCP.
Tests that need several processes (multi-worker metrics) or a blocking
client (schemathesis) start ``orderflow api`` as a subprocess instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic

from orderflow.agents.settings import Settings
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, open_store
from orderflow.web.app import create_app

# Each test builds a fresh app under the same name.
Sanic.test_mode = True

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def make_settings(redis_url: str, store_url: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, store_url=store_url, **overrides)


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


@dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def api_process_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``orderflow api`` subprocesses; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[ApiProcess] = []

    def start(redis_url: str, store_url: str, *args: str, **env: str) -> ApiProcess:
        port = free_port()
        log_path = tmp_path / f"api-{port}.log"
        environ = {
            **os.environ,
            "ORDERFLOW_REDIS_URL": redis_url,
            "ORDERFLOW_STORE_URL": store_url,
            "ORDERFLOW_HOST": "127.0.0.1",
            "ORDERFLOW_PORT": str(port),
            "ORDERFLOW_LOG_LEVEL": "WARNING",
            **env,
        }
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "orderflow.agents.cli", "api", *args],
                cwd=REPO,
                env=environ,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        handle = ApiProcess(process, f"http://127.0.0.1:{port}", log_path)
        started.append(handle)
        wait_until_healthy(handle)
        return handle

    yield start
    for handle in started:
        stop_process(handle.process)


def wait_until_healthy(handle: ApiProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise AssertionError(f"orderflow api exited early:\n{handle.log()}")
        try:
            if httpx.get(handle.base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"orderflow api not healthy within {timeout}s:\n{handle.log()}")


def stop_process(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def eventually_async(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
