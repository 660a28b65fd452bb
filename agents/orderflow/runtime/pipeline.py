"""Pipelines of prebuilt commands, packed by the runtime: publishing's and the agents'
hot path.

Why: redis-py's ``Pipeline`` spends more of the calling process's CPU than the server
spends running the commands. Profiling the workers at 200 orders/s (py-spy, ``--gil``)
put 14-31 % of each worker's CPU in ``Pipeline.execute``, most of it in the generic
``pack_command``/``Encoder.encode`` and the machinery around them (command stacks,
response callbacks, the retry wrapper), for pipelines of two to ten ``EVAL``/``XADD``
commands whose arguments are already bytes and strings. :func:`run_commands` packs the
commands with :func:`orderflow.runtime.wire.pack` (the consumer's encoder), writes them
in one ``send`` on a connection of the client's pool and reads one reply per command.

What stays the same as a redis-py pipeline with ``transaction=False``: one round trip;
the replies in order, raw (no response callbacks: ``XADD`` and ``EVAL`` have none that
matter, the callers take bytes); an error reply fails its own command only (returned in
its place with ``raise_on_error=False``, else the first one raised after every reply is
read); a lost connection or a timeout raises ``ConnectionError``/``TimeoutError`` and the
connection is dropped, never handed back with replies unread (nor when the caller is
cancelled mid-read). No retries: the App's client has none either
(:mod:`orderflow.runtime.connection`); a caller that may re-send does so itself.

Under Redis Cluster the commands go through redis-py's cluster pipeline as before: it
routes each command to its slot's master (and follows ``MOVED``), which a single
connection cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError, ResponseError

from orderflow.runtime.wire import pack

Argument = bytes | str | int | float
Command = Sequence[Argument]
"""One command: its name, then its arguments (``("XADD", stream, "*", field, value)``)."""


class QueuesScripts(Protocol):
    """What a merge or publish helper needs of a pipeline: ``EVAL`` queued on it (a
    redis-py ``Pipeline`` and a :class:`CommandPipeline` both qualify)."""

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...


class CommandPipeline:
    """Commands queued, then sent in one round trip by :meth:`execute`; the drop-in for
    ``redis.pipeline(transaction=False)`` where the commands are ``EVAL``s and ``XADD``s
    built by the caller (see the module for what is kept)."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._redis = redis
        self.commands: list[Command] = []

    def __len__(self) -> int:
        return len(self.commands)

    def execute_command(self, *args: Argument) -> None:
        self.commands.append(args)

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> None:
        self.commands.append(("EVAL", script, numkeys, *keys_and_args))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self.commands = self.commands, []
        return await run_commands(self._redis, commands, raise_on_error=raise_on_error)


async def run_commands(
    redis: Redis | RedisCluster, commands: Sequence[Command], *, raise_on_error: bool = True
) -> list[Any]:
    """Send ``commands`` in one round trip and return their replies in order (see the
    module); an error is returned in its command's place (an error reply; under Cluster
    also a node's connection error), or raised after every reply was read when
    ``raise_on_error``: a caller that treats every reply as a result must not get an
    error as one."""
    if not commands:
        return []
    if isinstance(redis, RedisCluster):
        replies = await _through_cluster_pipeline(redis, commands, raise_on_error)
    else:
        replies = await _on_pooled_connection(redis, commands)
    if raise_on_error:  # any error in place, as redis-py raises it: under Cluster it may
        # also be a connection error of one node, returned among the other replies
        error = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if error is not None:
            raise error
    return replies


async def _on_pooled_connection(redis: Redis, commands: Sequence[Command]) -> list[Any]:
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(b"".join([pack(c) for c in commands]), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as error:  # read in full: the next reply follows
                replies.append(error)
    except BaseException:
        # Replies may be left unread (an error, a timeout, a cancel): never reuse it.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    return replies


async def execute(pipe: Pipeline | ClusterPipeline, *, raise_on_error: bool = True) -> list[Any]:
    """Run a redis-py ``pipe``; a connection closed under it is a :class:`ConnectionError`.

    Why: when another task of the process closes the client's connection while this
    pipeline writes to it (a reconnect, a cluster client resetting a node after a
    ``MOVED``), redis-py can fail with ``AttributeError``/``TypeError`` on the vanished
    socket instead of a connection error (redis/redis-py#3546, #4287). Callers retry a
    connection error (the append may or may not have happened; re-publishing with
    ``once_ttl`` is the safe answer); an ``AttributeError`` would look like a bug in the
    handler and send the event to dead letters."""
    try:
        return cast(list[Any], await pipe.execute(raise_on_error=raise_on_error))
    except (AttributeError, TypeError) as exc:
        if "NoneType" not in str(exc):
            raise
        raise ConnectionError(f"connection closed during a pipeline: {exc}") from exc


async def _through_cluster_pipeline(
    redis: RedisCluster, commands: Sequence[Command], raise_on_error: bool
) -> list[Any]:
    """``raise_on_error`` is passed on, not only applied afterwards: redis-py's cluster
    pipeline reloads the slot map and tries again (a failover, a master gone) only when
    it raises."""
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return await execute(pipe, raise_on_error=raise_on_error)
