"""The contestants of ``benchmarks/throughput.py``: one consumer loop each, same stream.

Every contestant reads the same pre-filled stream through a consumer group of its own
(created at id 0) and counts what it received in a :class:`Tally`, so the driver can
check afterwards that each consumed and acked every event. Kept apart from the driver
(rounds, CPU accounting, the table) so each file has one job.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

from orderflow.runtime.envelope import Envelope
from orderflow.runtime.records import Record

STREAM = "bench-stream"
LATENCY_STREAM = "bench-latency-stream"
READ_COUNT = 100
FILL_BATCH = 1000


class BenchEvent(Record, event_type="bench.event.v1"):
    """A ~200-byte event, shaped like a small order line."""

    seq: int
    order_id: str
    item_id: str
    name: str
    quantity: int
    unit_price: int
    note: str


class LatencyProbe(Record, event_type="bench.latency_probe.v1"):
    seq: int
    sent_at: float  # time.perf_counter() in the publishing process (same process here)


def make_event(seq: int) -> BenchEvent:
    return BenchEvent(
        seq=seq,
        order_id=f"ord-{seq:012d}",
        item_id="item-margherita",
        name="Pizza Margherita",
        quantity=1 + seq % 3,
        unit_price=1250,
        note="extra basil, no olives, ring the bell twice please",
    )


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Outcome(NamedTuple):
    """One contestant's run: its rate, and how many events its handler or loop saw
    (so a contestant that stopped early or counted wrong cannot pass unnoticed)."""

    eps: float
    received: int


class Tally:
    """Counts the events handlers receive and signals once all ``expected`` arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = asyncio.Event()

    def add(self, count: int) -> None:
        self.received += count
        if self.received >= self.expected:
            self.done.set()


async def prefill(url: str, events: int) -> int:
    """Append ``events`` envelopes to STREAM; returns the payload size of one event."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(STREAM)
        payload_size = 0
        for start in range(0, events, FILL_BATCH):
            pipe = client.pipeline(transaction=False)
            for seq in range(start, min(start + FILL_BATCH, events)):
                fields = Envelope.new(make_event(seq), source="bench").to_fields()
                payload_size = len(fields["payload"])
                pipe.xadd(STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()
        return payload_size
    finally:
        await client.aclose()


_group_numbers = itertools.count(1)


async def create_group(url: str, prefix: str) -> str:
    """A new group at id 0, with a name never used before in this run (the runtime's
    dedupe marks are per group: a re-used name would skip every event as a duplicate).
    The driver creates it, not the contestant, so it can inspect the group afterwards."""
    group = f"{prefix}-{next(_group_numbers)}"
    client = aioredis.Redis.from_url(url)
    try:
        await client.xgroup_create(STREAM, group, id="0")
    finally:
        await client.aclose()
    return group


def group_state(url: str, group: str) -> tuple[int, int]:
    """(entries delivered to ``group``, entries still pending = delivered but unacked),
    as the server counts them: the same yardstick for every contestant. ``entries-read``
    is exact here because nothing is ever deleted from the pre-filled stream."""
    client = redis.Redis.from_url(url)
    try:
        for info in client.xinfo_groups(STREAM):
            if info["name"].decode() == group:
                return int(info["entries-read"] or 0), int(info["pending"])
    finally:
        client.close()
    raise LookupError(f"no consumer group {group!r} on {STREAM}")


# --------------------------------------------------------------------------- contestants


async def run_raw(url: str, group: str, events: int, *, dedupe: bool = False) -> Outcome:
    """The practical limit: read a batch, ack it pipelined with the next read.

    ``dedupe=True`` adds what the runtime's idempotency costs Redis, done the plain
    redis-py way: one HMGET per batch for the new event ids (its own round trip)
    and one HSET of their "processed" marks + EXPIREAT in the ack pipeline."""
    seen_key = f"bench:{{{group}}}:seen"
    client = aioredis.Redis.from_url(url)
    try:
        done = 0
        to_ack: list[bytes] = []
        marks: list[bytes] = []
        started = time.perf_counter()
        while done < events:
            pipe = client.pipeline(transaction=False)
            if marks:
                pipe.execute_command(
                    "HSET", seen_key, *itertools.chain(*((m, b"1") for m in marks))
                )
                pipe.execute_command("EXPIREAT", seen_key, int(time.time()) + 86_400)
            if to_ack:
                pipe.xack(STREAM, group, *to_ack)
            pipe.xreadgroup(group, "raw-1", {STREAM: ">"}, count=READ_COUNT, block=1000)
            replies = await pipe.execute()
            to_ack = []
            marks = []
            for _stream, entries in replies[-1] or ():
                for entry_id, fields in entries:
                    to_ack.append(entry_id)
                    if dedupe:
                        marks.append(fields[b"event_id"])
            if dedupe and marks:
                await client.execute_command("HMGET", seen_key, *marks)
            done += len(to_ack)
        if to_ack:
            await client.xack(STREAM, group, *to_ack)
        return Outcome(events / (time.perf_counter() - started), done)
    finally:
        await client.aclose()


async def run_runtime(url: str, group: str, events: int) -> Outcome:
    """An orderflow no-op agent with default settings."""
    from orderflow.runtime import App

    app = App("bench", broker=url)
    topic = app.topic(STREAM, value_type=BenchEvent)
    tally = Tally(events)

    @app.agent(topic, group=group)
    async def noop(stream: Any) -> None:
        async for _value in stream:
            tally.add(1)

    await app.connect()
    started = time.perf_counter()
    await app.start()
    try:
        await asyncio.wait_for(tally.done.wait(), timeout=max(60.0, events / 500))
        elapsed = time.perf_counter() - started
    finally:
        await app.stop()
    return Outcome(events / elapsed, tally.received)


async def run_faststream(url: str, group: str, events: int, *, batch: bool = False) -> Outcome:
    """FastStream's Redis stream subscriber with group and consumer, as its docs show.

    ``batch=False``: one handler call per message, each acked with its own XACK.
    ``batch=True``: FastStream's batch mode, ``StreamSub(batch=True,
    max_records=READ_COUNT)``: one XREADGROUP COUNT 100 per handler call, which
    gets the list, and one XACK of the whole batch after it returns (its default
    ack policy with a consumer group). The group already exists at id 0, so
    FastStream's own XGROUP CREATE at ``$`` fails as "already exists" and is
    skipped: it reads the whole stream like everyone else.

    Its per-message access log is turned off (``logger=None``): printing two lines
    per event would measure the terminal, not the subscriber.
    """
    from faststream.redis import RedisBroker

    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]
    tally = Tally(events)
    if batch:
        subscribe_faststream_batch(broker, group, tally)
    else:
        subscribe_faststream(broker, group, tally)
    started = time.perf_counter()
    await broker.start()
    try:
        await asyncio.wait_for(tally.done.wait(), timeout=max(120.0, events / 200))
        elapsed = time.perf_counter() - started
    finally:
        await broker.stop()
    return Outcome(events / elapsed, tally.received)


def subscribe_faststream(broker: Any, group: str, tally: Tally) -> None:
    """Per-message handler: no COUNT (``max_records`` unset, as in FastStream's docs)."""
    from faststream.redis import StreamSub

    @broker.subscriber(stream=StreamSub(STREAM, group=group, consumer="faststream-1"))
    async def handle(msg: dict[str, Any]) -> None:
        tally.add(1)


def subscribe_faststream_batch(broker: Any, group: str, tally: Tally) -> None:
    """Batch handler: counts the list's length, so the tally is in events, not batches."""
    from faststream.redis import StreamSub

    stream = StreamSub(
        STREAM, group=group, consumer="faststream-batch-1", batch=True, max_records=READ_COUNT
    )

    @broker.subscriber(stream=stream)
    async def handle_batch(msgs: list[dict[str, Any]]) -> None:
        tally.add(len(msgs))


def run_walrus(url: str, group: str, events: int) -> Outcome:
    """walrus ConsumerGroup: synchronous read(count=100) + ack per batch."""
    from walrus import Database

    db = Database.from_url(url)
    cg = db.consumer_group(group, {STREAM: "0"}, consumer="walrus-1")
    cg.create()
    stream = cg.streams[STREAM]
    done = 0
    started = time.perf_counter()
    while done < events:
        for _key, entries in cg.read(count=READ_COUNT, block=1000) or ():
            ids = [entry_id for entry_id, _data in entries]
            if ids:
                stream.ack(*ids)
                done += len(ids)
    elapsed = time.perf_counter() - started
    db.close()
    return Outcome(events / elapsed, done)
