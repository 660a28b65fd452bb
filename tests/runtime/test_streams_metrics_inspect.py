"""Semantics 10 and 11 (MAXLEN ~ per topic, metrics) and the read-only tools the
CLI is built on: stream inspection and the dead-letter functions."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Record, deadletter
from orderflow.runtime.inspect import inspect_streams
from orderflow.runtime.testing import eventually, run_app


class Note(Record, event_type="rt.ops.note.v1"):
    n: int


def make_app(redis_url: str, **options) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.2, "scheduler_interval": 0.05}
    return App("rt-ops", broker=redis_url, **{**defaults, **options})


async def test_topic_maxlen_caps_the_stream_approximately(redis_client, redis_url):
    app = make_app(redis_url)
    capped = app.topic("rt-capped", value_type=Note, maxlen=100)
    other = make_app(redis_url, stream_maxlen=5000)
    default = other.topic("rt-default-cap", value_type=Note)
    for n in range(1000):
        await capped.send(value=Note(n=n))
        await default.send(value=Note(n=n))
    await app.stop()
    await other.stop()
    assert 100 <= await redis_client.xlen("rt-capped") < 1000  # MAXLEN ~ trims whole nodes
    assert await redis_client.xlen("rt-default-cap") == 1000  # under its cap (settings)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_agent_metrics_count_outcomes_and_report_lag_and_pending(redis_client, redis_url):
    app = make_app(redis_url, retry_base=0.01, retry_cap=0.02, max_deliveries=2)
    topic = app.topic("rt-metered", value_type=Note)
    handled: list[int] = []

    @app.agent(topic, group="metered", name="rt-metered-agent")
    async def handle(stream):
        async for value in stream:
            if value.n == 0:
                raise RuntimeError("always fails")
            handled.append(value.n)

    async with run_app(app):
        for n in range(4):
            await topic.send(value=Note(n=n))
        await eventually(lambda: handled == [1, 2, 3])
        await eventually(lambda: redis_client.xlen("dead-letters"))
        await redis_client.xadd("rt-metered", Envelope.new(Note(n=9), source="t").to_fields())
        await app.update_group_metrics()  # what the periodic poller does
        pending_gauge = sample(
            "orderflow_consumer_pending", agent="rt-metered-agent", stream="rt-metered",
            group="metered",
        )  # fmt: skip
        lag_gauge = sample(
            "orderflow_consumer_lag", agent="rt-metered-agent", stream="rt-metered",
            group="metered",
        )  # fmt: skip
        await eventually(lambda: 9 in handled)
    agent = "rt-metered-agent"
    assert sample("orderflow_events_processed_total", agent=agent) == 4
    assert sample("orderflow_events_failed_total", agent=agent) == 2
    assert sample("orderflow_events_retried_total", agent=agent) == 1
    assert sample("orderflow_events_dead_lettered_total", agent=agent, reason="max_deliveries") == 1
    assert sample("orderflow_handler_seconds_count", agent=agent) == 4
    assert sample("orderflow_handler_seconds_sum", agent=agent) > 0
    assert lag_gauge + pending_gauge >= 1  # the extra entry was either waiting or delivered


async def test_inspect_streams_reports_length_groups_lag_and_oldest_pending(redis_client):
    for n in range(5):
        await redis_client.xadd("rt-inspected", Envelope.new(Note(n=n), source="t").to_fields())
    await redis_client.xgroup_create("rt-inspected", "readers", id="0")
    await redis_client.xreadgroup("readers", "r1", {"rt-inspected": ">"}, count=2)
    [info] = await inspect_streams(redis_client)
    assert info.name == "rt-inspected" and info.length == 5
    [group] = info.groups
    assert group.name == "readers" and group.pending == 2 and group.lag == 3
    assert group.consumers == 1
    assert group.oldest_pending_age_ms is not None and group.oldest_pending_age_ms >= 0
    assert json.loads(json.dumps(info.to_dict()))["groups"][0]["pending"] == 2


async def test_dead_letter_functions_list_show_replay_and_purge(redis_client):
    raw = Envelope.new(Note(n=1), source="t").to_fields()
    ids = []
    for stream in ("rt-a", "rt-b", "rt-a"):
        fields = deadletter.dead_letter_fields(
            stream=stream, entry_id="1-0", group="g", consumer="c", raw=raw,
            error_type="ValueError", error_message="bad", traceback="tb", delivery_count=5,
        )  # fmt: skip
        pipe = redis_client.pipeline(transaction=False)
        deadletter.queue_dead_letter(pipe, fields)
        [entry_id] = await pipe.execute()
        ids.append(entry_id.decode())
    newest_first = await deadletter.list_dead_letters(redis_client, count=10)
    assert [letter.id for letter in newest_first] == ids[::-1]
    only_a = await deadletter.list_dead_letters(redis_client, count=10, stream="rt-a")
    assert [letter.id for letter in only_a] == [ids[2], ids[0]]
    shown = await deadletter.get_dead_letter(redis_client, ids[1])
    assert shown is not None and shown.raw == raw and shown.delivery_count == 5
    assert shown.event_id == raw["event_id"] and shown.to_dict()["error_type"] == "ValueError"
    new_id = await deadletter.replay(redis_client, ids[1])
    [(entry_id, fields)] = await redis_client.xrange("rt-b")
    assert entry_id.decode() == new_id
    assert Envelope.from_fields(fields).event_id == raw["event_id"]  # the same event again
    assert await deadletter.count_dead_letters(redis_client) == 2
    assert await deadletter.purge(redis_client, [ids[0]]) == 1
    assert await deadletter.purge(redis_client, all=True) == 1
    assert await deadletter.count_dead_letters(redis_client) == 0


async def test_replay_takes_a_letter_already_read_and_iter_walks_in_batches(redis_client):
    """``dlq replay`` reads each letter once: it iterates (or looks up) letters and hands
    them to ``replay``, which then does not read them again."""
    raw = Envelope.new(Note(n=2), source="t").to_fields()
    for stream in ("rt-c", "rt-d", "rt-c", "rt-c"):
        await redis_client.xadd(
            deadletter.DEAD_LETTERS,
            deadletter.dead_letter_fields(
                stream=stream, entry_id="1-0", group="g", consumer="c", raw=raw,
                error_type="E", error_message="bad",
            ),
        )  # fmt: skip
    letters = [letter async for letter in deadletter.iter_dead_letters(redis_client, batch=2)]
    assert [letter.stream for letter in letters] == ["rt-c", "rt-d", "rt-c", "rt-c"]
    from_c = [x async for x in deadletter.iter_dead_letters(redis_client, "rt-c", batch=1)]
    assert [letter.id for letter in from_c] == [letters[i].id for i in (0, 2, 3)]

    await redis_client.xdel(deadletter.DEAD_LETTERS, letters[1].id)  # gone from the stream
    new_id = await deadletter.replay(redis_client, letters[1], delete=False)  # not re-read
    [(entry_id, fields)] = await redis_client.xrange("rt-d")
    assert entry_id.decode() == new_id and Envelope.from_fields(fields).event_id == raw["event_id"]
    with pytest.raises(deadletter.DeadLetterNotFound):
        await deadletter.replay(redis_client, letters[1].id)  # by id: read, and missing
