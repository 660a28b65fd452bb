"""RESP encoding and a private connection for the consumer's hot path.

redis-py's generic ``pack_command`` costs ~70 µs for a 100-id XACK, more than
the server needs to run it; the consumer builds its few commands itself from
bytes it already has, and talks over one connection of its own so that the
request for the next batch can be written before the current one is handled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection


def _bulk(value: bytes | str | int | float) -> bytes:
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    data = str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack(args: Sequence[bytes | str | int | float]) -> bytes:
    """One command in RESP: ``*<n>`` then each argument as a bulk string."""
    return b"*%d\r\n" % len(args) + b"".join([_bulk(arg) for arg in args])


def pack_parts(count: int, parts: Iterable[bytes]) -> bytes:
    """A command whose arguments were already encoded with :func:`bulks`."""
    return b"*%d\r\n" % count + b"".join(parts)


def bulks(values: Sequence[bytes]) -> bytes:
    """Pre-encode many bytes arguments (ids) at once."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(v), v) for v in values])


def text(value: Any) -> str:
    """A reply value as text: bytes decoded as UTF-8 (invalid bytes replaced, so
    inspecting a damaged entry never raises), anything else through ``str``."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def field_map(flat: Sequence[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields as read (RESP2 flat list or RESP3 map) -> dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


class PrivateConnection:
    """One connection made with the client's settings, kept for a consumer (reconnects
    lazily).

    Under Redis Cluster (``redis`` is a :class:`RedisCluster`) the connection goes to the
    master that owns ``key``'s slot, as found in the client's slot map when connecting.
    After :meth:`reset` (a lost connection, ``MOVED``/``ASK`` after a slot migrated, a
    failover) the next send reloads the slot map first, so it reaches the new owner.
    Single-node clients take a connection from their pool's factory, as before."""

    def __init__(self, redis: Redis, key: str | bytes | None = None) -> None:
        self._cluster: RedisCluster | None = None
        self._key: str | bytes = key or b""
        self._refresh = False  # reload the slot map before the next connect
        if isinstance(redis, RedisCluster):
            if key is None:
                raise ValueError("a private connection to a cluster needs the key it serves")
            self._cluster = redis
        else:
            self._pool = redis.connection_pool
        self._conn: AbstractConnection | None = None

    async def _cluster_connection(self, cluster: RedisCluster) -> AbstractConnection:
        """A new connection to the master owning the key's slot (slot map reloaded
        first after a reset: the owner may have changed)."""
        await cluster.initialize()  # once per client: no-op when the map is loaded
        if self._refresh:
            await cluster.nodes_manager.initialize()
            self._refresh = False
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(self._key))
        return node.connection_class(**node.connection_kwargs)

    async def send(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            if self._cluster is None:
                conn = self._pool.make_connection()
            else:
                conn = await self._cluster_connection(self._cluster)
            self._conn = conn
        if not conn.is_connected:
            await conn.connect()
        await conn.send_packed_command(data, check_health=False)

    async def read(self, max_wait: float | None = None) -> Any:
        conn = self._conn
        if conn is None:
            raise ConnectionError("not connected")
        return await conn.read_response(timeout=max_wait)

    async def reset(self) -> None:
        """Drop the socket (after an error or a cancelled read: its state is unknown)."""
        conn, self._conn = self._conn, None
        if self._cluster is not None:
            self._refresh = True
        if conn is not None:
            with contextlib.suppress(Exception):  # best effort on a broken socket
                await conn.disconnect()

    async def close(self) -> None:
        await self.reset()
