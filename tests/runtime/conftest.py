"""Fixtures shared by the runtime tests (the servers come from the pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from orderflow.runtime.localserver import LocalRedisServer


@pytest.fixture
def sync_redis(redis_server: LocalRedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()
