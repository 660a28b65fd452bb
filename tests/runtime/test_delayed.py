"""Semantic 8: delayed events are parked in a sorted set and moved by one Lua script:
never early, exactly once with several workers, capped like any send."""

from __future__ import annotations

import asyncio

from orderflow.runtime import App, Envelope, Record, keys, scheduler
from orderflow.runtime.testing import eventually, run_app


class Reminder(Record, event_type="rt.delayed.reminder.v1"):
    n: int


async def test_delayed_send_is_parked_then_appended_never_early(redis_client, redis_url):
    app = App("rt-delayed", broker=redis_url, scheduler_interval=0.01)
    topic = app.topic("rt-reminders", value_type=Reminder)
    async with run_app(app):
        assert await topic.send(value=Reminder(n=1), delay=0.3) is None
        assert await redis_client.xlen("rt-reminders") == 0
        [(member, due_us)] = await redis_client.zrange(
            keys.delayed_key("rt-reminders"), 0, -1, withscores=True
        )
        await eventually(lambda: redis_client.xlen("rt-reminders"))
    [(entry_id, fields)] = await redis_client.xrange("rt-reminders")
    entry_ms = int(entry_id.split(b"-")[0])
    assert entry_ms >= int(due_us) // 1000  # appended at or after its due time (server clock)
    assert Envelope.from_fields(fields).payload == {"n": 1}
    assert await redis_client.zcard(keys.delayed_key("rt-reminders")) == 0
    assert member  # the parked member held the whole entry


async def test_several_workers_move_each_event_exactly_once(redis_client, redis_url):
    sender = App("rt-delay-sender", broker=redis_url)
    topic = sender.topic("rt-many-delayed", value_type=Reminder)
    # Workers that do not even declare the topic: they find it through the index.
    workers = [App(f"rt-delay-worker-{i}", broker=redis_url, scheduler_interval=0.005)
               for i in range(3)]  # fmt: skip
    for n in range(200):
        await topic.send(value=Reminder(n=n), delay=0.2)
    await sender.stop()
    for worker in workers:
        await worker.start()
    try:
        await eventually(lambda: _length_is(redis_client, "rt-many-delayed", 200))
        await asyncio.sleep(0.05)  # give a double move the chance to show up
    finally:
        for worker in workers:
            await worker.stop()
    entries = await redis_client.xrange("rt-many-delayed")
    assert len(entries) == 200
    assert len({fields[b"event_id"] for _, fields in entries}) == 200
    assert sum(w.scheduler.moved_total for w in workers if w.scheduler) == 200


async def _length_is(redis_client, stream: str, expected: int) -> bool:
    return await redis_client.xlen(stream) == expected


async def test_moved_events_respect_the_topic_maxlen(redis_client, redis_url):
    for n in range(1000):
        fields = Envelope.new(Reminder(n=n), source="t").to_fields()
        await scheduler.schedule(redis_client, "rt-capped-delayed", fields, 0, maxlen=100)
    moved = [await scheduler.move_due(redis_client, "rt-capped-delayed", limit=500)
             for _ in range(3)]  # fmt: skip
    assert moved == [500, 500, 0]
    assert 100 <= await redis_client.xlen("rt-capped-delayed") < 1000


async def test_one_round_trip_moves_the_due_events_of_every_stream(redis_client):
    """The scheduler's tick: every stream's due events in one call, counted per stream;
    a stream with nothing parked answers 0, and a server that lost its scripts (a
    restart: ``SCRIPT FLUSH`` here) still gets every stream moved."""
    for stream, count in (("rt-all-a", 3), ("rt-all-b", 1)):
        for n in range(count):
            fields = Envelope.new(Reminder(n=n), source="t").to_fields()
            await scheduler.schedule(redis_client, stream, fields, 0, maxlen=None)
    fields = Envelope.new(Reminder(n=9), source="t").to_fields()
    await scheduler.schedule(redis_client, "rt-all-later", fields, 60, maxlen=None)
    await redis_client.script_flush()
    streams = ["rt-all-a", "rt-all-b", "rt-all-empty", "rt-all-later"]
    assert await scheduler.move_due_all(redis_client, streams, limit=2) == [2, 1, 0, 0]
    assert await scheduler.move_due_all(redis_client, streams, limit=2) == [1, 0, 0, 0]
    assert [await redis_client.xlen(s) for s in streams] == [3, 1, 0, 0]
    assert await redis_client.zcard(keys.delayed_key("rt-all-later")) == 1  # not yet due
