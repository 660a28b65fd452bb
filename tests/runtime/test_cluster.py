"""The runtime on a private Redis Cluster (3 masters + 3 replicas, one per session).

These run in every ``make test`` (the ``redis_cluster`` fixture starts the cluster on
first use), not only under ``ORDERFLOW_TEST_CLUSTER=1``: the URL form, the harness's
cluster itself, consumers of streams that live on different masters, a consumer
following its stream's slot to another master, and ``orderflow streams`` seeing the
streams of every master.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from orderflow.runtime import App, Record
from orderflow.runtime.cli import main
from orderflow.runtime.connection import cluster_nodes, connect_redis, is_cluster
from orderflow.runtime.keys import stream_key
from orderflow.runtime.localcluster import SLOTS, LocalCluster
from orderflow.runtime.pytest_plugin import sync_client_for
from orderflow.runtime.testing import eventually, run_app
from tests.runtime.worker_process import wait_until


class Tick(Record, event_type="cluster.tick.v1"):
    n: int


def streams_on_every_master(cluster: LocalCluster, client: Any, prefix: str) -> list[str]:
    """One stream name per master (the first names whose slot each master owns)."""
    found: dict[int, str] = {}
    for n in range(1000):
        name = f"{prefix}-{n}"
        port = cluster.master_of(client.keyslot(name)).port
        found.setdefault(port, name)
        if len(found) == len(cluster.masters):
            return list(found.values())
    raise AssertionError("no stream name for some master")


def test_cluster_urls_name_every_startup_node_and_refuse_what_they_cannot_mean() -> None:
    nodes, options = cluster_nodes("redis+cluster://u:p%40ss@h1:7000,h2:7001/")
    assert nodes == [("h1", 7000), ("h2", 7001)]
    assert options == {"username": "u", "password": "p@ss"}
    assert cluster_nodes("rediss+cluster://h:1")[1] == {"ssl": True}
    for bad in ("redis+cluster://h1:7000/3", "redis+cluster://h1:7000?x=1", "redis+cluster://h1"):
        with pytest.raises(ValueError):
            cluster_nodes(bad)
    assert is_cluster(connect_redis("redis+cluster://127.0.0.1:1"))
    assert not is_cluster(connect_redis("redis://127.0.0.1:1/0"))


def test_the_local_cluster_has_every_slot_and_a_replica_per_master(
    redis_cluster: LocalCluster,
) -> None:
    with redis_cluster.client(redis_cluster.masters[0]) as client:
        info = client.execute_command("CLUSTER", "INFO")
        assert "cluster_state:ok" in info and f"cluster_slots_assigned:{SLOTS}" in info
        lines = client.execute_command("CLUSTER", "NODES").splitlines()
    masters = [line for line in lines if " master " in line or "myself,master" in line]
    replicas = [line for line in lines if "slave" in line]
    assert (len(masters), len(replicas)) == (3, 3)
    master_ids = {line.split()[0] for line in masters}
    assert {line.split()[3] for line in replicas} == master_ids  # one replica each


async def test_consumers_of_streams_on_three_masters_each_get_their_own(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    names = streams_on_every_master(redis_cluster, redis_cluster_client, "rt-spread")
    app = App("cluster-spread", broker=redis_cluster.url)
    seen: dict[str, list[int]] = {name: [] for name in names}
    for name in names:

        @app.agent(app.topic(name, value_type=Tick), group="spread-group", name=f"spread-{name}")
        async def handle(stream: Any, name: str = name) -> None:
            async for tick in stream:
                seen[name].append(tick.n)

    async with run_app(app):
        for name in names:
            topic = app.topic(name, value_type=Tick)
            for n in range(50):
                await topic.send(value=Tick(n=n))
        await eventually(lambda: all(len(v) == 50 for v in seen.values()), timeout=30)
        client = redis_cluster_client
        for name in names:
            await eventually(lambda name=name: nothing_pending(client, name), timeout=30)
    assert all(values == list(range(50)) for values in seen.values())
    # Each consumer connected to its stream's master at once: no MOVED, no reconnect.
    assert all(reconnects(f"spread-{name}") == 0 for name in names)


def reconnects(agent: str) -> float:
    return REGISTRY.get_sample_value("orderflow_reconnects_total", {"agent": agent}) or 0.0


async def nothing_pending(client: aioredis.Redis, stream: str) -> bool:
    groups = await client.xinfo_groups(stream)
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0


async def test_a_consumer_follows_its_stream_to_another_master(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    stream = "rt-migrating"
    slot = redis_cluster_client.keyslot(stream)  # type: ignore[attr-defined]
    app = App("cluster-migrate", broker=redis_cluster.url, block_ms=200)
    topic = app.topic(stream, value_type=Tick)
    handled: list[int] = []

    @app.agent(topic, group="migrate-group", name="rt-migrate-agent")
    async def handle(stream: Any) -> None:
        async for tick in stream:
            handled.append(tick.n)

    reconnects_before = reconnects("rt-migrate-agent")

    async with run_app(app):
        for n in range(100):
            await topic.send(value=Tick(n=n))
        await eventually(lambda: len(handled) == 100, timeout=30)
        before = redis_cluster.master_of(slot)
        target = next(node for node in redis_cluster.masters if node is not before)
        # The stream, its dedupe marks and its group move together (one slot).
        assert redis_cluster.migrate_slot(slot, target) >= 2
        assert redis_cluster.master_of(slot) is target
        for n in range(100, 200):
            await topic.send(value=Tick(n=n))
        await eventually(lambda: len(handled) >= 200, timeout=30)
        await eventually(lambda: nothing_pending(redis_cluster_client, stream), timeout=30)
    assert sorted(handled) == list(range(200))  # nothing lost, nothing handled twice
    assert reconnects("rt-migrate-agent") > reconnects_before  # it was told MOVED and followed
    with redis_cluster.client(target) as client:
        assert client.xlen(stream) == 200  # the new owner holds the whole stream


def test_streams_command_lists_the_streams_of_every_master(
    redis_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = sync_client_for(redis_cluster.url)
    try:
        client.flushall()
        names = streams_on_every_master(redis_cluster, client, "rt-cli")
        for name in names:
            client.xadd(name, {"n": "1"})
    finally:
        client.close()
    assert main(["streams", "--redis-url", redis_cluster.url, "--json"]) == 0
    listed = [info["name"] for info in json.loads(capsys.readouterr().out)]
    assert listed == sorted(names)  # one per master, each once


def test_the_cluster_server_command_serves_until_sigterm(tmp_path: Path) -> None:
    """``python -m orderflow.runtime.localserver --cluster``: its URL works, SIGTERM -> 0."""
    out = tmp_path / "cluster.out"
    command = [sys.executable, "-m", "orderflow.runtime.localserver", "--cluster"]
    with out.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=sink)
    try:
        wait_until(
            lambda: "serving" in out.read_text() or server.poll() is not None,
            timeout=60,
            what="the cluster's ready line",
        )
        found = re.search(r"serving (redis\+cluster://\S+)", out.read_text())
        assert found, out.read_text()
        client = sync_client_for(found.group(1))
        try:
            client.set("cli-key", "1")  # routed to the owner of its slot
            assert client.get("cli-key") == b"1"
            assert len(client.get_primaries()) == 3 and len(client.get_replicas()) == 3  # type: ignore[attr-defined]
        finally:
            client.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:  # the test failed: SIGTERM, so it stops its six nodes
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def test_atomic_writes_to_its_streams_master_and_refuses_a_key_of_another_slot(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    """``event.atomic()`` under Cluster is a one-node MULTI on the stream's master
    (``slot_transactions``): a tagged key commits with the mark; a key of another slot
    aborts the whole transaction (the server refuses it), so nothing is written and the
    event ends in dead letters."""
    stream, foreign = "rt-atomic", "rt-atomic-elsewhere"
    client = redis_cluster_client
    assert client.keyslot(stream) != client.keyslot(foreign)  # type: ignore[attr-defined]
    app = App("cluster-atomic", broker=redis_cluster.url, block_ms=200, retry_base=0.05)
    topic = app.topic(stream, value_type=Tick)
    counter = stream_key(stream, "count")

    @app.agent(topic, group="atomic-group", name="rt-atomic-agent", max_deliveries=2)
    async def handle(events: Any) -> None:
        async for tick in events:
            async with events.current_event.atomic() as pipe:
                pipe.incr(counter)
                if tick.n < 0:
                    pipe.set(foreign, "written")

    async with run_app(app):
        await topic.send(value=Tick(n=1))
        await topic.send(value=Tick(n=-1))
        await topic.send(value=Tick(n=2))
        await eventually(lambda: client.xlen("dead-letters"), timeout=30)
        await eventually(lambda: nothing_pending(client, stream), timeout=30)
    assert await client.get(counter) == b"2"  # the two good events, once each
    assert await client.exists(foreign) == 0  # the refused transaction wrote nothing
    letters: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange("dead-letters")  # type: ignore[assignment]
    assert [letter[b"stream"] for _, letter in letters] == [stream.encode()]


async def test_send_with_replicas_returns_once_the_replica_has_the_entry(
    redis_cluster: LocalCluster, redis_cluster_client: aioredis.Redis
) -> None:
    """``send(replicas=1)``: ``XADD`` + ``WAIT 1`` on one connection to the stream's
    master; when it returns, the master's replica holds the entry."""
    stream = "rt-replicated"
    app = App("cluster-replicas", broker=redis_cluster.url)
    topic = app.topic(stream, value_type=Tick)
    entry_ids = [await topic.send(value=Tick(n=n), replicas=1) for n in range(3)]
    await app.stop()
    holding = []
    for replica in redis_cluster.replicas:
        with redis_cluster.client(replica) as client:
            client.execute_command("READONLY")  # a replica serves reads of its master's slots
            try:
                holding.append([e for e, _ in client.xrange(stream)])
            except redis.ResponseError:  # MOVED: not a replica of the stream's master
                continue
    assert holding == [entry_ids]  # exactly one replica, with every entry
