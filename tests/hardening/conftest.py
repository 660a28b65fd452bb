"""Fixtures for the hardening suite (issue 9: each case was found by an attempt to break
the running system, and the tests keep it fixed).

The HTTP-edge cases are ones an HTTP client library would normalise away (a bare line
feed in the request line, ``/static/.``, a body shorter than its Content-Length), so
most of those tests write bytes to a socket themselves and parse the answer.
``edge_api`` serves ``create_app(role="all")`` against the test session's private Valkey
with a 1 s request timeout, plus one test-only route that never answers (for Sanic's
response timeout, set to 3 s on that app). The store cases use ``api``/``any_api``: the
real app on a seeded SQLite file (or PostgreSQL) with a short store deadline, and a
second connection that can hold the file's locks.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sanic import HTTPResponse, Request

from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.sqlite import SqliteStore, sqlite_path_from_url
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.logs import ConsoleFormatter, ContextFilter, JsonFormatter
from orderflow.web.app import create_app
from tests.store.conftest import sqlite_unreadable
from tests.web.conftest import (  # noqa: F401 - api_process_factory: a fixture used by the tests here
    LiveApi,
    api_process_factory,
    make_settings,
    running_api,
    seeded_store,
    serve,
)

REQUEST_TIMEOUT_SECONDS = 1
RESPONSE_TIMEOUT_SECONDS = 3
NEVER_ANSWERS = "/test-only/never-answers"


async def _never_answers(request: Request) -> HTTPResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable: Sanic's response timeout cancels this handler")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge_api(
    redis_server: LocalRedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveApi]:
    store_url = await seeded_store(tmp_path_factory.mktemp("hardening"))
    settings = make_settings(
        redis_server.url, store_url, http_request_timeout_seconds=REQUEST_TIMEOUT_SECONDS
    )
    app = create_app(settings, role="all")
    app.config.RESPONSE_TIMEOUT = RESPONSE_TIMEOUT_SECONDS
    app.add_route(_never_answers, NEVER_ANSWERS, methods=["GET"], name="test_never_answers")
    async for base_url in serve(app):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield LiveApi(app, base_url, client)


@dataclass
class RawAnswer:
    """One HTTP/1.1 response read off a socket, and whether the server closed it after."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed_after: bool

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        problem: dict[str, Any] = json.loads(self.body)
        assert problem["status"] == self.status
        assert problem["title"] and problem["detail"] and problem["type"]
        assert problem["correlation_id"] == self.headers["x-correlation-id"]
        return problem


async def raw_exchange(base_url: str, request: bytes, *, within: float = 30.0) -> RawAnswer:
    """Send ``request`` as is on a new connection and read one response (``within`` s at most)."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.lower(): value
            for name, value in (line.split(": ", 1) for line in header_lines if ": " in line)
        }
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), within)
        closed_after = headers.get("connection") == "close" and (
            await asyncio.wait_for(reader.read(1), within) == b""
        )
    finally:
        writer.close()
    return RawAnswer(int(status_line.split(" ")[1]), headers, body, closed_after)


@dataclass
class CapturedLogs:
    """What the root logger wrote while a test ran, in both of the runtime's formats."""

    console: io.StringIO
    json: io.StringIO
    records: list[logging.LogRecord]

    def console_lines(self) -> list[str]:
        return self.console.getvalue().splitlines()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json.getvalue().splitlines()]

    def at_least(self, level: int) -> list[logging.LogRecord]:
        return [record for record in self.records if record.levelno >= level]


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Root-logger output in the console and the JSON format, as `orderflow api` writes it."""
    captured = CapturedLogs(io.StringIO(), io.StringIO(), [])
    handlers: list[logging.Handler] = []
    for stream, formatter in (
        (captured.console, ConsoleFormatter()),
        (captured.json, JsonFormatter()),
    ):
        writer = logging.StreamHandler(stream)
        writer.setFormatter(formatter)
        writer.addFilter(ContextFilter("hardening"))
        handlers.append(writer)
    handlers.append(_Keep(captured.records))
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield captured
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(previous_level)


STORE_DEADLINE = 1.0
"""Short, so that a lock held past it is cheap to test; the property is the same at 10 s."""

ORDERS = "/api/v1/orders"


def order_body(*lines: tuple[str, int]) -> dict[str, Any]:
    return {"lines": [{"item_id": item, "quantity": qty} for item, qty in lines]}


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    return await seeded_store(tmp_path)


@pytest.fixture
async def api(redis_client: Any, redis_url: str, store_url: str) -> AsyncIterator[LiveApi]:
    """The app (REST role) with a store deadline of ``STORE_DEADLINE`` seconds."""
    settings = make_settings(redis_url, store_url, store_deadline_seconds=STORE_DEADLINE)
    async for live in running_api(settings):
        yield live


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store seeded with the demo menu: a SQLite file, or a database of the private
    PostgreSQL (``postgres_url``, requested only for that case)."""
    if request.param == "sqlite":
        return await seeded_store(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    async with opened_store(url) as store:
        await store.seed_menu(DEMO_MENU)
    return url


@pytest.fixture
async def any_api(redis_client: Any, redis_url: str, any_store_url: str) -> AsyncIterator[LiveApi]:
    """``api`` on each store adapter that runs here."""
    settings = make_settings(redis_url, any_store_url, store_deadline_seconds=STORE_DEADLINE)
    async for live in running_api(settings):
        yield live


@contextmanager
def file_locked(store_url: str) -> Iterator[sqlite3.Connection]:
    """Hold the SQLite file's write lock from another connection (another process would
    do the same: ``BEGIN EXCLUSIVE``), released on exit. In WAL mode readers go on."""
    other = sqlite3.connect(sqlite_path_from_url(store_url), isolation_level=None, timeout=5)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextmanager
def unreadable(store_url: str) -> Iterator[None]:
    """Shut the API's readers out too (see ``sqlite_unreadable``)."""
    with sqlite_unreadable(sqlite_path_from_url(store_url)):
        yield


async def outbox_order_ids(store: Store) -> list[str]:
    """The order id of every outbox row (published or not), read from the database."""
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.dsn)
        try:
            rows = [row[0] for row in await conn.fetch("SELECT envelope FROM outbox ORDER BY seq")]
        finally:
            await conn.close()
    else:
        assert isinstance(store, SqliteStore)
        raw = sqlite3.connect(store.path, timeout=5)
        try:
            rows = [row[0] for row in raw.execute("SELECT envelope FROM outbox ORDER BY seq")]
        finally:
            raw.close()
    return [json.loads(row)["payload"]["order_id"] for row in rows]
