"""Fixtures shared by the runtime tests (the servers come from the pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.pytest_plugin import sync_client_for


@pytest.fixture
def sync_redis(redis_server: LocalRedisServer | LocalCluster) -> Iterator[redis.Redis]:
    client = sync_client_for(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()
