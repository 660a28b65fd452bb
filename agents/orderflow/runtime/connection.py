"""The runtime's Redis client settings, the consumer name of a process, and how a
Redis URL or error is shown to people (password masked, one line)."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and error messages.

    A Redis URL often carries the password (``redis://:secret@host`` or
    ``?password=secret``); a start banner or an error line must name the server
    without leaking it into log storage."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _socket_reason(error: BaseException | None) -> str | None:
    if not isinstance(error, OSError):
        return None
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)  # "Connection refused"
    if isinstance(error, socket.gaierror) and len(error.args) == 2:
        return str(error.args[1])  # "Name or service not known"
    return None


def error_reason(exc: BaseException) -> str:
    """What went wrong, in a few words: "Connection refused", not redis-py's "Error 111
    connecting to host:port. Connect call failed (...)" (the URL is said elsewhere)."""
    reason = _socket_reason(exc) or _socket_reason(exc.__cause__ or exc.__context__)
    if reason:
        return reason
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__
