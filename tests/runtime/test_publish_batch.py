"""``App.send_envelopes`` calls made while one is in flight share the next round trip.

Counted against a real server: every call gets its own results, every event is
appended once, the round trips are fewer than the calls, an error reply fails only the
call that caused it, a failed round trip fails every call of its batch (and the next
call is still answered), and a call cancelled before its batch left is never published.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from orderflow.runtime import App, Envelope, Record, Topic


class Parcel(Record, event_type="rt.batch.parcel.v1"):
    n: int


def two_envelopes(topic: Topic[Any], n: int) -> list[tuple[Topic[Any], Envelope]]:
    return [(topic, topic.envelope(Parcel(n=n))), (topic, topic.envelope(Parcel(n=n + 1000)))]


async def test_concurrent_calls_share_round_trips_and_each_gets_its_own_results(
    redis_client, redis_url
):
    app = App("rt-batch", broker=redis_url)
    topic = app.topic("rt-batch-shared", value_type=Parcel)
    await app.connect()
    calls = [two_envelopes(topic, n) for n in range(20)]
    results = await asyncio.gather(*(app.send_envelopes(c, once=True) for c in calls))
    assert [len(r) for r in results] == [2] * 20 and all(all(r) for r in results)
    entries = await redis_client.xrange("rt-batch-shared")
    ids = {entry_id.decode(): fields[b"event_id"].decode() for entry_id, fields in entries}
    for call, result in zip(calls, results, strict=True):  # each result names its own entry
        assert [ids[entry_id] for entry_id in result] == [e.event_id for _, e in call]
    assert len(entries) == 40
    assert app.publish_batcher.calls == 20
    assert app.publish_batcher.round_trips < 20  # the first alone, the others together
    again = await app.send_envelopes(calls[0], once=True)
    assert again == [None, None] and await redis_client.xlen("rt-batch-shared") == 40
    await app.stop()


async def test_an_error_reply_fails_only_the_call_that_sent_it(redis_client, redis_url):
    app = App("rt-batch-error", broker=redis_url)
    good = app.topic("rt-batch-good", value_type=Parcel)
    broken = app.topic("rt-batch-broken", value_type=Parcel)
    await redis_client.set("rt-batch-broken", "not a stream")
    await app.connect()
    first = asyncio.ensure_future(app.send_envelopes(two_envelopes(good, 1), once=True))
    await asyncio.sleep(0)  # in flight: the next three queue and go out together
    outcomes = await asyncio.gather(
        app.send_envelopes(two_envelopes(good, 2), once=True),
        app.send_envelopes(two_envelopes(broken, 3), once=True),
        app.send_envelopes(two_envelopes(good, 4), once=True),
        return_exceptions=True,
    )
    assert all(await first)
    assert isinstance(outcomes[1], ResponseError)
    for outcome in (outcomes[0], outcomes[2]):
        assert isinstance(outcome, list) and len(outcome) == 2 and all(outcome)
    assert await redis_client.xlen("rt-batch-good") == 6
    assert app.publish_batcher.round_trips == 2
    await app.stop()


async def test_a_call_cancelled_while_queued_is_never_published(redis_client, redis_url):
    app = App("rt-batch-cancel", broker=redis_url)
    topic = app.topic("rt-batch-cancel", value_type=Parcel)
    await app.connect()
    first = asyncio.ensure_future(app.send_envelopes(two_envelopes(topic, 1), once=True))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(app.send_envelopes(two_envelopes(topic, 2), once=True))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert all(await first)
    assert all(await app.send_envelopes(two_envelopes(topic, 3), once=True))
    entries = await redis_client.xrange("rt-batch-cancel")
    assert sorted(json.loads(fields[b"payload"])["n"] for _, fields in entries) == [
        1,
        3,
        1001,
        1003,
    ]
    await app.stop()


async def test_a_failed_round_trip_fails_every_call_of_its_batch_and_nothing_sticks(
    dead_publisher: App,
):
    topic = dead_publisher.topic("rt-batch-dead", value_type=Parcel)
    outcomes = await asyncio.gather(
        *(dead_publisher.send_envelopes(two_envelopes(topic, n), once=True) for n in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes)
    assert dead_publisher.publish_batcher.calls == 5
    assert dead_publisher.publish_batcher.round_trips < 5
    with pytest.raises(RedisConnectionError):  # answered, not queued behind a dead batch
        await dead_publisher.send_envelopes(two_envelopes(topic, 9), once=True)
