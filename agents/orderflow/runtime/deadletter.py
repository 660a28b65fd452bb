"""The ``dead-letters`` stream: write, list, show, replay, purge.

An entry lands here when its handler failed ``max_deliveries`` times or when
it could not be decoded at all. It keeps everything needed to understand and
replay it: source stream, entry id, group, consumer, the raw entry (JSON of the
original fields), error type/message, a short traceback, the delivery count
and when it failed. ``orderflow dlq ...`` is a thin CLI over these functions.
"""

from __future__ import annotations

import traceback as tb_module
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ujson
from redis.asyncio import Redis

from orderflow.runtime import keys
from orderflow.runtime.connection import is_cluster
from orderflow.runtime.fresh_check import ONCE_NAME
from orderflow.runtime.partitions import in_topic
from orderflow.runtime.wire import text

DEAD_LETTERS = keys.DEAD_LETTERS
DEAD_LETTERS_MAXLEN = 100_000


def short_traceback(exc: BaseException, limit: int = 5, max_chars: int = 2000) -> str:
    text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__, limit=limit))
    return text[-max_chars:]


def raw_entry_json(fields: Mapping[Any, Any]) -> str:
    return ujson.dumps({text(k): text(v) for k, v in fields.items()}, ensure_ascii=False)


def dead_letter_fields(
    *,
    stream: str,
    entry_id: str,
    group: str,
    consumer: str,
    raw: Mapping[Any, Any],
    error_type: str,
    error_message: str,
    traceback: str = "",
    delivery_count: int = 0,
) -> dict[str, str]:
    return {
        "stream": stream,
        "entry_id": entry_id,
        "group": group,
        "consumer": consumer,
        "raw": raw_entry_json(raw),
        "error_type": error_type,
        "error_message": error_message[:2000],
        "traceback": traceback,
        "delivery_count": str(delivery_count),
        "failed_at": datetime.now(UTC).isoformat(),
    }


def queue_dead_letter(pipe: Any, fields: Mapping[str, str]) -> None:
    """Queue the ``XADD`` of one dead letter on ``pipe`` (capped at DEAD_LETTERS_MAXLEN).
    The consumer queues its source-stream ``XACK`` behind it in the same round trip."""
    pipe.xadd(DEAD_LETTERS, dict(fields), maxlen=DEAD_LETTERS_MAXLEN, approximate=True)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # id in the dead-letters stream
    stream: str
    entry_id: str
    group: str
    consumer: str
    raw: dict[str, str]
    error_type: str
    error_message: str
    traceback: str
    delivery_count: int
    failed_at: str

    @property
    def event_id(self) -> str | None:
        return self.raw.get("event_id")

    @property
    def event_type(self) -> str | None:
        return self.raw.get("event_type")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "raw": self.raw,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
            "delivery_count": self.delivery_count,
            "failed_at": self.failed_at,
        }

    @classmethod
    def from_entry(cls, entry_id: Any, fields: Mapping[Any, Any]) -> DeadLetter:
        data = {text(k): text(v) for k, v in fields.items()}
        try:
            raw = ujson.loads(data.get("raw", "{}"))
            if not isinstance(raw, dict):
                raw = {}
        except ValueError:
            raw = {}
        try:
            count = int(data.get("delivery_count", "0"))
        except ValueError:
            count = 0
        return cls(
            id=text(entry_id),
            stream=data.get("stream", ""),
            entry_id=data.get("entry_id", ""),
            group=data.get("group", ""),
            consumer=data.get("consumer", ""),
            raw={str(k): str(v) for k, v in raw.items()},
            error_type=data.get("error_type", ""),
            error_message=data.get("error_message", ""),
            traceback=data.get("traceback", ""),
            delivery_count=count,
            failed_at=data.get("failed_at", ""),
        )


async def list_dead_letters(
    redis: Redis, count: int = 50, stream: str | None = None
) -> list[DeadLetter]:
    """Newest first; ``stream`` filters by source stream, a topic's name standing for its
    partitions too (scans at most 10x ``count``)."""
    scan = count if stream is None else count * 10
    entries = await redis.xrevrange(DEAD_LETTERS, count=scan)
    letters = [DeadLetter.from_entry(eid, fields or {}) for eid, fields in entries or []]
    if stream is not None:
        letters = [letter for letter in letters if in_topic(letter.stream, stream)]
    return letters[:count]


async def count_dead_letters(redis: Redis) -> int:
    return int(await redis.xlen(DEAD_LETTERS))


async def get_dead_letter(redis: Redis, dead_letter_id: str) -> DeadLetter | None:
    entries = await redis.xrange(DEAD_LETTERS, min=dead_letter_id, max=dead_letter_id, count=1)
    if not entries:
        return None
    eid, fields = entries[0]
    return DeadLetter.from_entry(eid, fields or {})


class DeadLetterNotFound(LookupError):
    pass


async def iter_dead_letters(
    redis: Redis, stream: str | None = None, *, batch: int = 1000
) -> AsyncIterator[DeadLetter]:
    """Every dead letter, oldest first (optionally only those from source ``stream`` or,
    for a topic's name, its partitions),
    read ``batch`` at a time: ``dlq replay --all`` walks a full stream without holding it
    all, and hands each letter to :func:`replay` without reading it again."""
    start = "-"
    while True:
        entries = await redis.xrange(DEAD_LETTERS, min=start, count=batch) or []
        for eid, fields in entries:
            letter = DeadLetter.from_entry(eid, fields or {})
            if stream is None or in_topic(letter.stream, stream):
                yield letter
        if len(entries) < batch:
            return
        start = "(" + text(entries[-1][0])


async def replay(
    redis: Redis,
    dead_letter: DeadLetter | str,
    *,
    delete: bool = True,
    maxlen: int | None = None,
) -> str:
    """Put the original entry back on its source stream (same fields, same event_id,
    so dedupe still applies: an event that *was* processed is not processed twice; the
    ``once`` field is left out, so every group checks the copy:
    :mod:`orderflow.runtime.fresh_check`).
    Returns the new entry id; removes the dead letter unless ``delete=False``.

    ``dead_letter`` is the letter itself when the caller has already read it (the CLI
    looks it up to say where it goes), or its id, which is then read here: each letter
    is read once either way. Raises :class:`DeadLetterNotFound` for an unknown id."""
    letter = (
        dead_letter
        if isinstance(dead_letter, DeadLetter)
        else await get_dead_letter(redis, dead_letter)
    )
    if letter is None:
        raise DeadLetterNotFound(dead_letter)
    if not letter.stream or not letter.raw:
        raise ValueError(f"dead letter {letter.id} has no source stream or raw entry")
    # Not a MULTI: the two keys live in different Cluster slots. XADD first, so a crash
    # in between leaves a duplicate dead letter, never a lost event (under Cluster the
    # keys are on different nodes, which a cluster pipeline writes to at once: there the
    # XDEL is sent only after the XADD was answered).
    pipe = redis.pipeline(transaction=False)
    fields = {name: value for name, value in letter.raw.items() if name != ONCE_NAME}
    if maxlen:
        pipe.xadd(letter.stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
    else:
        pipe.xadd(letter.stream, fields)  # type: ignore[arg-type]
    if delete and is_cluster(redis):
        [added] = await pipe.execute()
        await redis.xdel(DEAD_LETTERS, letter.id)
        return text(added)
    if delete:
        pipe.xdel(DEAD_LETTERS, letter.id)
    results = await pipe.execute()
    return text(results[0])


async def purge(redis: Redis, ids: Sequence[str] | None = None, *, all: bool = False) -> int:
    """Delete the given dead letters, or every one with ``all=True``; returns how many."""
    if all:
        count = int(await redis.xlen(DEAD_LETTERS))
        await redis.delete(DEAD_LETTERS)
        return count
    if not ids:
        return 0
    return int(await redis.xdel(DEAD_LETTERS, *ids))
