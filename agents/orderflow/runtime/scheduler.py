"""Delayed events: park in a sorted set, move to the stream when due.

``send(..., delay=s)`` adds the entry to ``orderflow:{<stream>}:delayed`` with
score = *server* time + delay (µs), computed inside Lua so that client clock
skew cannot make an event early. Every worker runs a :class:`Scheduler`; its
move script reads due members, XADDs them (with the topic's MAXLEN ~) and
ZREMs them in one atomic script, so several workers never move an event twice
and never move it before its time. Only one slot is touched per script (see
:mod:`orderflow.runtime.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

import ujson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from orderflow.runtime import keys
from orderflow.runtime.metrics import DELAYED_MOVED
from orderflow.runtime.pipeline import run_commands
from orderflow.runtime.scripts import LuaScript

log = logging.getLogger("orderflow.scheduler")

_SCHEDULE = LuaScript(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local due = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[2])
return string.format('%.0f', due)
"""
)

_MOVE_DUE = LuaScript(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now),
                       'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local item = cjson.decode(member)
  local args = {'XADD', KEYS[2]}
  local maxlen = tonumber(item['m'])
  if maxlen and maxlen > 0 then
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = '~'
    args[#args + 1] = string.format('%d', maxlen)
  end
  args[#args + 1] = '*'
  for _, v in ipairs(item['f']) do
    args[#args + 1] = v
  end
  redis.call(unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""
)


async def schedule(
    redis: Redis, stream: str, fields: dict[str, str], delay: float, maxlen: int | None
) -> int:
    """Park an entry for ``stream``; returns its due time (server clock, µs since epoch)."""
    flat: list[str] = []
    for name, value in fields.items():
        flat.append(name)
        flat.append(value)
    member = ujson.dumps({"m": maxlen or 0, "f": flat}, ensure_ascii=False)
    await redis.sadd(keys.DELAYED_INDEX, stream)
    delay_us = max(0, int(delay * 1_000_000 + 0.999999))  # round up: never early
    due = await _SCHEDULE(redis, [keys.delayed_key(stream)], [delay_us, member])
    return int(due)


async def move_due(redis: Redis, stream: str, limit: int = 500) -> int:
    """Move up to ``limit`` due events of ``stream``; returns how many moved."""
    moved = await _MOVE_DUE(redis, [keys.delayed_key(stream), stream], [limit])
    return int(moved)


async def move_due_all(redis: Redis, streams: Sequence[str], limit: int = 500) -> list[int]:
    """:func:`move_due` for every stream of ``streams`` in ONE round trip (each stream's
    script on its own slot: under Cluster, redis-py's pipeline sends each to its node);
    returns how many moved, per stream in order.

    Why: a worker's scheduler checks every stream of its topics each tick (10 a second
    by default) whether or not anything was ever delayed, and a round trip per stream
    was most of what an idle worker spent (one per 100 ms and stream: ~6 streams for the
    simulator's App). A stream whose script the server does not know yet (a restarted
    server) is moved alone, with the script's source."""
    commands = [
        ("EVALSHA", _MOVE_DUE.sha, 2, keys.delayed_key(stream), stream, limit) for stream in streams
    ]
    replies = await run_commands(redis, commands, raise_on_error=False)
    moved: list[int] = []
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, NoScriptError):  # redis-py's class for a NOSCRIPT reply
            moved.append(await move_due(redis, stream, limit))
        elif isinstance(reply, Exception):
            raise reply
        else:
            moved.append(int(reply))
    return moved


class Scheduler:
    """Background loop that moves due events for every stream that has any."""

    def __init__(
        self,
        redis: Callable[[], Redis],
        *,
        streams: Callable[[], Iterable[str]] = tuple,
        interval: float = 0.1,
        refresh_every: float = 2.0,
        batch: int = 500,
    ) -> None:
        self._redis = redis
        self._own_streams = streams
        self.interval = interval
        self.refresh_every = refresh_every
        self.batch = batch
        self._known: set[str] = set()
        self.moved_total = 0

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        failures = 0
        while not stopping.is_set():
            try:
                redis = self._redis()
                if loop.time() >= next_refresh:
                    members = await redis.smembers(keys.DELAYED_INDEX)
                    self._known = {m.decode() if isinstance(m, bytes) else m for m in members}
                    next_refresh = loop.time() + self.refresh_every
                streams = sorted(self._known | set(self._own_streams()))
                counts = await move_due_all(redis, streams, self.batch)
                busy = False
                for moved in counts:
                    self.moved_total += moved
                    if moved:
                        DELAYED_MOVED.inc(moved)
                    busy = busy or moved >= self.batch
                failures = 0
                if busy:
                    continue
                delay = self.interval
            except (RedisError, OSError) as exc:
                failures += 1
                delay = min(5.0, self.interval * 2**failures)
                log.warning("scheduler: %s; retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
