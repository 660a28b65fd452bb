"""The runtime's Redis client settings, the consumer name of a process, and how a
Redis URL or error is shown to people (password masked, one line).

Two URL forms: ``redis://`` / ``rediss://`` / ``unix://`` (one server, redis-py's own
syntax) and ``redis+cluster://[user:password@]host:port[,host:port...][/]``
(a Redis Cluster or Valkey cluster: the listed nodes are *startup nodes*, any one that
answers tells the client the slot map; ``rediss+cluster://`` uses TLS). The scheme, not a
probe of the server (``CLUSTER INFO``), decides: a URL says what it means, a deployment
never changes mode because one node happened to answer differently.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS


# ``execute_command(..., **RAW)``: the reply as the server sent it. The consumer parses
# XREADGROUP/XCLAIM/XAUTOCLAIM/XPENDING replies itself: it must see ``[id, nil]`` for an
# entry trimmed away, which redis-py's parsers turn into ``(id, {})``, and it does without
# their per-entry dicts.
# On one node a bytes command name (``b"XCLAIM"``) used to skip redis-py's parser, but a
# cluster client routes by the command's name and needs it as text, so the runtime's
# clients get parsers that step aside when asked (:func:`allow_raw_replies`).
RAW_REPLY = "orderflow_raw_reply"
RAW: dict[str, Any] = {RAW_REPLY: True}
RAW_COMMANDS = ("XREADGROUP", "XCLAIM", "XAUTOCLAIM", "XPENDING")


def _raw_or(parse: Callable[..., Any] | None) -> Callable[..., Any]:
    def callback(response: Any, **options: Any) -> Any:
        if options.get(RAW_REPLY) or parse is None:
            return response
        return parse(response, **options)

    return callback


def allow_raw_replies(client: Redis | RedisCluster) -> None:
    """Let ``RAW`` calls of :data:`RAW_COMMANDS` on ``client`` skip redis-py's parser
    (every other call still gets its usual parsed reply)."""
    callbacks = client.response_callbacks
    for command in RAW_COMMANDS:
        callbacks[command] = _raw_or(callbacks.get(command))


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_cluster(redis: object) -> bool:
    """The client talks to a Redis Cluster (where keys of different slots live apart)."""
    return isinstance(redis, RedisCluster)


def default_consumer_name() -> str:
    """Stable for the life of the process, unique across hosts: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect_redis(url: str, *, block_ms: int = 1000, pool_size: int | None = None) -> Redis:
    """A client for the runtime: bytes replies, no hidden retries (the consumer
    handles reconnects itself and must *see* a lost reply), and a socket timeout
    longer than the longest blocking read. With ``pool_size`` the pool is bounded and
    blocking: a caller waits up to 10 s for a free connection. ``RAW`` calls return
    unparsed replies (:func:`allow_raw_replies`).

    A ``redis+cluster://`` URL gives a :class:`redis.asyncio.cluster.RedisCluster`
    (typed as ``Redis``: it has the same command methods; the few places that differ
    ask :func:`is_cluster`). It follows ``MOVED``/``ASK`` itself and reloads the slot
    map after a lost connection; ``pool_size`` then bounds connections *per node*, and
    a call over the bound fails at once (redis-py's cluster client has no blocking
    pool)."""
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": max(10.0, block_ms / 1000 + 10.0),
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
    }
    client: Redis | RedisCluster
    if is_cluster_url(url):
        client = cluster_client(url, pool_size=pool_size, **options)
    elif pool_size is None:
        client = Redis.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=10, **options
        )
        client = Redis(connection_pool=pool)
    allow_raw_replies(client)
    return cast(Redis, client)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes of a ``redis+cluster://`` URL and its client options
    (username, password, TLS). A query string or a database number is refused:
    a cluster has only database 0, and options are the runtime's to set."""
    scheme, _, rest = url.partition("://")
    tls = CLUSTER_SCHEMES.get(scheme.lower())
    if tls is None:
        raise ValueError("not a redis+cluster:// or rediss+cluster:// URL")
    netloc, _, tail = rest.partition("/")
    netloc, query_mark, _ = netloc.partition("?")
    if query_mark or tail not in ("", "0"):
        raise ValueError("a cluster URL takes no database number and no ?options")
    options: dict[str, Any] = {}
    userinfo, _, hosts = netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    if tls:
        options["ssl"] = True
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster URL needs host:port for every node, not {item!r}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, options


def cluster_client(url: str, *, pool_size: int | None = None, **options: Any) -> RedisCluster:
    """A :class:`RedisCluster` for a ``redis+cluster://`` URL (see :func:`connect_redis`)."""
    nodes, url_options = cluster_nodes(url)
    options = {**options, **url_options}
    if pool_size is not None:
        options["max_connections"] = pool_size
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], **options)


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
    cause: BaseException | None = exc
    for _ in range(3):  # a cluster client wraps the socket error twice
        if cause is None:
            break
        if reason := _socket_reason(cause):
            return reason
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__
