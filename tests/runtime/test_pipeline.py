"""Pipelines of prebuilt commands (``orderflow.runtime.pipeline``) against a real server.

What a caller relies on: replies in order, an error reply in its own command's place
(or raised once every reply is read), a connection never reused with replies unread
(after a cancel or a lost connection the next call gets its own replies), and the same
on a cluster, where the commands of one pipeline live on different masters.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from orderflow.runtime.pipeline import CommandPipeline, run_commands
from orderflow.runtime.pytest_plugin import cluster_mode


async def test_replies_come_in_order_with_an_error_reply_in_its_own_place(redis_client):
    await redis_client.set("rt-pipe-text", "not a number")
    replies = await run_commands(
        redis_client,
        [
            ("XADD", "rt-pipe-stream", "*", "n", 1),
            ("INCR", "rt-pipe-text"),  # an error reply, mid-pipeline
            ("EVAL", "return ARGV[1] .. ':' .. KEYS[1]", 1, "rt-pipe-key", 2.5),
            ("XADD", "rt-pipe-stream", "MAXLEN", "~", 100, "*", "n", "two"),
        ],
        raise_on_error=False,
    )
    assert isinstance(replies[1], ResponseError)
    assert replies[2] == b"2.5:rt-pipe-key"
    entries = await redis_client.xrange("rt-pipe-stream")
    assert [entry_id for entry_id, _ in entries] == [replies[0], replies[3]]
    assert [fields[b"n"] for _, fields in entries] == [b"1", b"two"]


async def test_raise_on_error_raises_after_reading_every_reply(redis_client):
    await redis_client.set("rt-pipe-raise", "x")
    with pytest.raises(ResponseError):
        await run_commands(
            redis_client,
            [("INCR", "rt-pipe-raise"), ("SET", "rt-pipe-after", "applied")],
        )
    assert await redis_client.get("rt-pipe-after") == b"applied"  # not atomic, as before
    # Every reply was read: the connection, back in the pool, answers the next call right.
    for n in range(5):
        replies = await run_commands(redis_client, [("SET", "rt-pipe-n", n), ("GET", "rt-pipe-n")])
        assert replies[1] == str(n).encode()


@pytest.mark.skipif(cluster_mode(), reason="the blocked read is on one connection: single node")
async def test_a_call_cancelled_mid_read_never_leaves_its_reply_for_the_next(redis_client):
    blocked = asyncio.create_task(
        run_commands(redis_client, [("BLPOP", "rt-pipe-never", 1), ("ECHO", "late")])
    )
    await asyncio.sleep(0.2)  # written, waiting for the BLPOP's reply
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    for n in range(3):  # had the connection gone back with two replies due, these would shift
        assert await run_commands(redis_client, [("ECHO", f"own {n}")]) == [f"own {n}".encode()]


@pytest.mark.skipif(cluster_mode(), reason="kills the one server's client connections")
async def test_a_killed_connection_never_answers_wrongly_and_the_next_call_reconnects(
    redis_client, sync_redis
):
    assert await run_commands(redis_client, [("ECHO", "before")]) == [b"before"]
    assert sync_redis.client_kill_filter(_type="normal", skipme=True) >= 1
    # The pool may notice the closed socket and reconnect first; if not, the call says so.
    with contextlib.suppress(RedisConnectionError):
        assert await run_commands(redis_client, [("ECHO", "after")]) == [b"after"]
    assert await run_commands(redis_client, [("ECHO", "again")]) == [b"again"]


async def test_command_pipeline_queues_evals_and_empties_on_execute(redis_client):
    pipe = CommandPipeline(redis_client)
    for n in range(3):  # three keys, three slots on a cluster
        pipe.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, f"rt-pipe-count-{n}", n + 1)
    assert len(pipe) == 3
    assert await pipe.execute() == [1, 2, 3]
    assert len(pipe) == 0 and await pipe.execute() == []
