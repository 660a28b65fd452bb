"""Read-only views of streams and groups (``orderflow streams``, lag/pending metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from orderflow.runtime.partitions import in_topic
from orderflow.runtime.wire import text


def _as_dict(row: Any) -> dict[str, Any]:
    """XINFO replies: RESP3 map or RESP2 flat list -> dict with str keys."""
    if isinstance(row, dict):
        return {text(k): v for k, v in row.items()}
    return {text(row[i]): row[i + 1] for i in range(0, len(row), 2)}


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


@dataclass
class GroupInfo:
    name: str
    consumers: int
    pending: int
    lag: int | None  # None when the server cannot tell (e.g. after XDEL/trim past the group)
    last_delivered_id: str
    oldest_pending_id: str | None = None
    oldest_pending_age_ms: int | None = None  # server now - time in the oldest pending id
    oldest_pending_idle_ms: int | None = None  # since its last delivery
    entries_read: int | None = None  # the group's read counter (Redis 7+): grows as it reads


@dataclass
class StreamInfo:
    name: str
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    groups: list[GroupInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def server_time_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def group_infos(
    redis: Redis, stream: str, *, pending_details: bool = True
) -> list[GroupInfo]:
    try:
        rows = await redis.xinfo_groups(stream)
    except ResponseError:
        return []  # no such key
    groups: list[GroupInfo] = []
    now_ms = await server_time_ms(redis) if pending_details else 0
    for row in rows or []:
        data = _as_dict(row)
        info = GroupInfo(
            name=text(data.get("name", "")),
            consumers=int(data.get("consumers", 0)),
            pending=int(data.get("pending", 0)),
            lag=_int_or_none(data.get("lag")),
            last_delivered_id=text(data.get("last-delivered-id", "0-0")),
            entries_read=_int_or_none(data.get("entries-read")),
        )
        if pending_details and info.pending:
            oldest = await redis.xpending_range(stream, info.name, min="-", max="+", count=1)
            if oldest:
                oldest_id = text(oldest[0]["message_id"])
                info.oldest_pending_id = oldest_id
                info.oldest_pending_idle_ms = int(oldest[0]["time_since_delivered"])
                info.oldest_pending_age_ms = max(0, now_ms - entry_ms(oldest_id))
        groups.append(info)
    return groups


async def inspect_stream(redis: Redis, stream: str) -> StreamInfo | None:
    if await redis.type(stream) not in (b"stream", "stream"):
        return None
    length = int(await redis.xlen(stream))
    first = await redis.xrange(stream, count=1)
    last = await redis.xrevrange(stream, count=1)
    return StreamInfo(
        name=stream,
        length=length,
        first_entry_id=text(first[0][0]) if first else None,
        last_entry_id=text(last[0][0]) if last else None,
        groups=await group_infos(redis, stream),
    )


async def discover_streams(redis: Redis) -> list[str]:
    names: set[str] = set()
    async for key in redis.scan_iter(count=500, _type="stream"):
        names.add(text(key))
    return sorted(names)


async def inspect_streams(redis: Redis, streams: list[str] | None = None) -> list[StreamInfo]:
    """Every stream (or the given ones) with its groups; missing streams are left out.
    A given name also stands for the partitions of the topic of that name."""
    names = await discover_streams(redis)
    if streams is not None:
        names = [name for name in names if any(in_topic(name, wanted) for wanted in streams)]
    result: list[StreamInfo] = []
    for name in names:
        info = await inspect_stream(redis, name)
        if info is not None:
            result.append(info)
    return result


@dataclass
class ConsumerInfo:
    """One consumer of a group, as ``XINFO CONSUMERS`` reports it: the worker processes
    seen (a consumer name is ``<host>-<pid>``) and how long each has been quiet."""

    stream: str
    group: str
    name: str
    pending: int
    idle_ms: int  # since its last read attempt (or ack)
    inactive_ms: int | None  # since its last successful read (Redis/Valkey 7.2+), else None


async def consumer_infos(redis: Redis, stream: str, group: str) -> list[ConsumerInfo]:
    """The consumers of ``group`` on ``stream`` (empty when either does not exist)."""
    try:
        rows = await redis.execute_command(b"XINFO", b"CONSUMERS", stream, group)
    except ResponseError:
        return []
    consumers = []
    for row in rows or []:
        data = _as_dict(row)
        inactive = _int_or_none(data.get("inactive"))
        consumers.append(
            ConsumerInfo(
                stream=stream,
                group=group,
                name=text(data.get("name", "")),
                pending=int(data.get("pending", 0)),
                idle_ms=int(data.get("idle", 0)),
                inactive_ms=inactive if inactive is not None and inactive >= 0 else None,
            )
        )
    return consumers
