"""The runtime's Redis client settings, and the consumer name of a process."""

from __future__ import annotations

import os
import socket
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def default_consumer_name() -> str:
    """Stable for the life of the process, unique across hosts: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect_redis(url: str, *, block_ms: int = 1000, pool_size: int | None = None) -> Redis:
    """A client for the runtime: bytes replies, no hidden retries (the consumer
    handles reconnects itself and must *see* a lost reply), and a socket timeout
    longer than the longest blocking read. With ``pool_size`` the pool is bounded and
    blocking: a caller waits up to 10 s for a free connection."""
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": max(10.0, block_ms / 1000 + 10.0),
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
    }
    if pool_size is None:
        return Redis.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=10, **options)
    return Redis(connection_pool=pool)
