"""``event.atomic()`` under Redis Cluster: the ``MULTI``/``EXEC`` goes to the master that
owns the event's stream through a plain one-node client, not redis-py's cluster
transaction pipeline.

Why: redis-py's asyncio ``ClusterPipeline(transaction=True)`` runs every command queued
on it in a new thread under ``asyncio.run(...)``. After a lost connection (a master
SIGKILLed, its replica promoted) that thread reloads the shared cluster client's slot map
on its own short-lived event loop, and the client is left holding connections bound to a
closed loop: producers and acks then fail with "Event loop is closed" / "attached to a
different loop", and the slot map keeps naming the dead master (seen in the first run of
``benchmarks/cluster_faults.py``; ``tests/cluster/test_cluster_faults.py`` now proves the
failover end to end). A one-node pipeline has none of that and costs no thread per command.

What stays the same: every key queued must carry the stream's hash tag. A key of another
slot is refused by the server (``MOVED`` or ``CROSSSLOT`` when queued, so ``EXEC`` aborts
with ``EXECABORT``): the handler fails with nothing written, as before.

After any failure the node's client is dropped and the next transaction reloads the slot
map first, so it reaches the stream's new owner after a failover or a migration.
"""

from __future__ import annotations

import contextlib
from weakref import WeakKeyDictionary

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import SlotNotCoveredError


class SlotClients:
    """One-node clients of one cluster client, by node name (``host:port``)."""

    def __init__(self) -> None:
        self.clients: dict[str, Redis] = {}
        self.stale = False  # reload the slot map before the next lookup

    async def client_for(self, cluster: RedisCluster, key: str) -> Redis:
        await cluster.initialize()  # once per client: no-op when the map is loaded
        if self.stale:
            self.stale = False
            await cluster.nodes_manager.initialize()
        node = cluster.get_node_from_key(key)
        if node is None:  # the slot map has a hole: a failover in progress
            self.stale = True
            raise SlotNotCoveredError(f"no node serves the slot of {key!r} yet")
        client = self.clients.get(node.name)
        if client is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            client = self.clients[node.name] = Redis(connection_pool=pool)
        return client

    async def forget(self) -> None:
        """A transaction failed: the owner may have changed; start afresh next time."""
        clients, self.clients = self.clients, {}
        self.stale = True
        for client in clients.values():
            with contextlib.suppress(Exception):  # best effort on broken sockets
                await client.aclose()


_BY_CLUSTER: WeakKeyDictionary[RedisCluster, SlotClients] = WeakKeyDictionary()


def slot_clients(cluster: RedisCluster) -> SlotClients:
    clients = _BY_CLUSTER.get(cluster)
    if clients is None:
        clients = _BY_CLUSTER[cluster] = SlotClients()
    return clients


async def slot_pipeline(cluster: RedisCluster, key: str) -> Pipeline:
    """A ``MULTI``/``EXEC`` pipeline on the master owning ``key``'s slot."""
    client = await slot_clients(cluster).client_for(cluster, key)
    return client.pipeline(transaction=True)
