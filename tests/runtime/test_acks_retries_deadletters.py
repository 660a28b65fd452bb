"""Semantics 3, 4 and 5: ack after handling (batched), retries on Redis's delivery
count with back-off, dead letters after max_deliveries, undecodable entries."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Record
from orderflow.runtime.pytest_plugin import on_server_of
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.testing import eventually, run_app


class Order(Record, event_type="rt.acks.order.v1"):
    n: int


def make_app(redis_url: str, **options) -> App:
    defaults = {
        "block_ms": 50,
        "claim_interval": 0.1,
        "claim_idle_ms": 60_000,  # only our own back-off can bring an entry back
        "retry_base": 0.02,
        "retry_cap": 0.1,
        "scheduler_interval": 0.05,
    }
    return App("rt-acks", broker=redis_url, **{**defaults, **options})


async def pending_count(redis_client, stream: str, group: str) -> int:
    return int((await redis_client.xpending(stream, group))["pending"])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_entry_is_acked_only_after_the_handler_is_done(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-ack-after", value_type=Order)
    started, release = asyncio.Event(), asyncio.Event()

    @app.agent(topic, group="ack-group")
    async def handle(stream):
        async for _ in stream:
            started.set()
            await release.wait()

    async with run_app(app):
        await topic.send(value=Order(n=1))
        await asyncio.wait_for(started.wait(), 10)
        assert await pending_count(redis_client, "rt-ack-after", "ack-group") == 1
        release.set()
        await eventually(lambda: _is_zero(redis_client, "rt-ack-after", "ack-group"))


async def _is_zero(redis_client, stream: str, group: str) -> bool:
    return await pending_count(redis_client, stream, group) == 0


async def test_acks_are_batched_one_xack_per_batch(redis_client, redis_url):
    pipe = redis_client.pipeline(transaction=False)
    for n in range(300):
        pipe.xadd("rt-batched", Envelope.new(Order(n=n), source="t").to_fields())
    await pipe.execute()
    # Counted on the server that holds the stream (under Cluster: the master of its slot).
    owner = on_server_of(redis_client, "rt-batched")
    await redis_client.config_resetstat(**owner)
    app = make_app(redis_url, read_count=100)
    handled = 0

    @app.agent(app.topic("rt-batched", value_type=Order), group="batch-group")
    async def handle(stream):
        nonlocal handled
        async for _ in stream:
            handled += 1

    async with run_app(app):
        await eventually(lambda: handled == 300)
        await eventually(lambda: _is_zero(redis_client, "rt-batched", "batch-group"))
    stats = await redis_client.info("commandstats", **owner)
    xack_calls = stats["cmdstat_xack"]["calls"]
    # 300 events in batches of 100: at most one XACK per batch (acks of consecutive
    # batches may share one), never one per event.
    assert 1 <= xack_calls <= 4, stats["cmdstat_xack"]


def test_back_off_is_exponential_capped_and_jittered():
    policy = RetryPolicy(base=0.5, cap=30.0, max_deliveries=5, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    jittered = RetryPolicy(base=1.0, cap=8.0, jitter=0.2)
    assert all(0.8 * 4 <= jittered.delay(3) <= 4 for _ in range(200))
    assert not policy.exhausted(4) and policy.exhausted(5)


async def test_failing_event_is_retried_by_the_same_consumer_on_redis_delivery_count(
    redis_client, redis_url
):
    app = make_app(redis_url, max_deliveries=5)
    topic = app.topic("rt-retry", value_type=Order)
    attempts: list[int] = []
    done: list[int] = []

    @app.agent(topic, group="retry-group", name="rt-retry-agent")
    async def handle(stream):
        async for event in stream.events():
            if event.value.n == 1 and event.delivery_count < 3:
                attempts.append(event.delivery_count)
                raise RuntimeError("transient")
            if event.value.n == 1:
                attempts.append(event.delivery_count)
            done.append(event.value.n)

    async with run_app(app):
        for n in range(5):
            await topic.send(value=Order(n=n))
        await eventually(lambda: sorted(done) == [0, 1, 2, 3, 4])
        await eventually(lambda: _is_zero(redis_client, "rt-retry", "retry-group"))
    assert attempts == [1, 2, 3]  # Redis's own counter, as the handler saw it
    assert done.index(1) > done.index(2)  # the others were not held up by the retry
    assert sample("orderflow_events_retried_total", agent="rt-retry-agent") == 2
    assert sample("orderflow_events_failed_total", agent="rt-retry-agent") == 2
    assert sample("orderflow_events_processed_total", agent="rt-retry-agent") == 5
    assert await redis_client.xlen("dead-letters") == 0


async def test_poison_event_goes_to_dead_letters_after_max_deliveries(redis_client, redis_url):
    app = make_app(redis_url, consumer_name="poison-consumer")
    topic = app.topic("rt-poison", value_type=Order)
    done: list[int] = []

    @app.agent(topic, group="poison-group", max_deliveries=3, name="rt-poison-agent")
    async def handle(stream):
        async for value in stream:
            if value.n == 13:
                raise ValueError("thirteen is unlucky")
            done.append(value.n)

    async with run_app(app):
        entry_id = await topic.send(value=Order(n=13), key="k13")
        await topic.send(value=Order(n=14))
        await eventually(lambda: redis_client.xlen("dead-letters"))
        await topic.send(value=Order(n=15))  # the agent is still alive
        await eventually(lambda: done == [14, 15])
        await eventually(lambda: _is_zero(redis_client, "rt-poison", "poison-group"))
    [(_, letter)] = await redis_client.xrange("dead-letters")
    letter = {k.decode(): v.decode() for k, v in letter.items()}
    assert letter["stream"] == "rt-poison"
    assert letter["entry_id"] == entry_id
    assert letter["group"] == "poison-group"
    assert letter["consumer"] == "poison-consumer"
    assert letter["error_type"] == "ValueError"
    assert letter["error_message"] == "thirteen is unlucky"
    assert "raise ValueError" in letter["traceback"]
    assert letter["delivery_count"] == "3"
    assert datetime.fromisoformat(letter["failed_at"]).tzinfo is not None
    raw = json.loads(letter["raw"])
    assert raw["event_type"] == "rt.acks.order.v1" and raw["key"] == "k13"
    assert json.loads(raw["payload"]) == {"n": 13}
    assert (
        sample(
            "orderflow_events_dead_lettered_total", agent="rt-poison-agent", reason="max_deliveries"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("fields", "error_type", "message"),
    [
        ({"hello": "world"}, "ValueError", "not an orderflow envelope"),
        ({"event_id": "e1", "event_type": "rt.acks.order.v1", "payload": "{nope"},
         "ValidationError", "Invalid JSON"),
        ({"event_id": "e2", "event_type": "rt.acks.order.v1", "payload": '{"n": "x"}'},
         "ValidationError", "n"),
    ],
)  # fmt: skip
async def test_undecodable_entries_are_dead_lettered_at_once(
    redis_client, redis_url, fields, error_type, message
):
    app = make_app(redis_url)
    topic = app.topic("rt-garbage", value_type=Order)
    handled: list[int] = []

    @app.agent(topic, group="garbage-group")
    async def handle(stream):
        async for value in stream:
            handled.append(value.n)

    async with run_app(app):
        bad_id = await redis_client.xadd("rt-garbage", fields)
        await topic.send(value=Order(n=1))
        await eventually(lambda: handled == [1])
        await eventually(lambda: redis_client.xlen("dead-letters"))
        await eventually(lambda: _is_zero(redis_client, "rt-garbage", "garbage-group"))
    [(_, letter)] = await redis_client.xrange("dead-letters")
    assert letter[b"entry_id"] == bad_id
    assert letter[b"error_type"].decode() == error_type
    assert message in letter[b"error_message"].decode()
    assert letter[b"delivery_count"] == b"1"


async def test_unknown_event_type_on_an_untyped_topic_is_dead_lettered(redis_client, redis_url):
    app = make_app(redis_url)
    got: list[Record] = []

    @app.agent(app.topic("rt-untyped"), group="untyped-group")
    async def handle(stream):
        async for value in stream:
            got.append(value)

    fields = Envelope.new(Order(n=1), source="t").to_fields()
    async with run_app(app):
        await redis_client.xadd("rt-untyped", {**fields, "event_type": "rt.nobody.knows.v1"})
        await redis_client.xadd("rt-untyped", fields)
        await eventually(lambda: got == [Order(n=1)])
        await eventually(lambda: redis_client.xlen("dead-letters"))
    [(_, letter)] = await redis_client.xrange("dead-letters")
    assert b"unknown event_type" in letter[b"error_message"]


async def test_entry_already_over_max_deliveries_is_dead_lettered_unhandled(
    redis_client, redis_url
):
    """A poison event that kills its consumer each time must not kill the next one."""
    await redis_client.xgroup_create("rt-crashy", "crash-group", id="0", mkstream=True)
    await redis_client.xadd("rt-crashy", Envelope.new(Order(n=1), source="t").to_fields())
    [[_, [(entry_id, _)]]] = await redis_client.xreadgroup(
        "crash-group", "died-1", {"rt-crashy": ">"}
    )
    await redis_client.xclaim("rt-crashy", "crash-group", "died-2", 0, [entry_id])
    app = make_app(redis_url, claim_idle_ms=20, max_deliveries=2)
    handled: list[int] = []

    @app.agent(app.topic("rt-crashy", value_type=Order), group="crash-group")
    async def handle(stream):
        async for value in stream:
            handled.append(value.n)

    async with run_app(app):
        await eventually(lambda: redis_client.xlen("dead-letters"))
        await eventually(lambda: _is_zero(redis_client, "rt-crashy", "crash-group"))
    assert handled == []
    [(_, letter)] = await redis_client.xrange("dead-letters")
    assert letter[b"delivery_count"] == b"3"
    assert b"max_deliveries=2" in letter[b"error_message"]


async def test_a_due_retry_is_not_handed_over_twice_after_a_reconnect(redis_client, redis_url):
    """Regression: after a lost connection the consumer drains its own pending
    entries from id 0 *and* XCLAIMs its due retries in the same round trip. The
    failing entry came back through both; the second copy was acked as a
    duplicate while the first was still failing, and the event was lost
    (neither processed nor dead-lettered)."""
    app = make_app(redis_url, max_deliveries=10, retry_base=0.01, retry_cap=0.02)
    topic = app.topic("rt-retry-reconnect", value_type=Order)
    attempts = 0
    processed: list[int] = []

    @app.agent(topic, group="retry-reconnect-group")
    async def handle(stream):
        nonlocal attempts
        async for order in stream:
            attempts += 1
            if attempts == 1:
                # Cut every consumer connection while this entry is failing, so
                # the next round trip both drains from 0 and retries it.
                await redis_client.client_kill_filter(_type="normal", skipme=True)
            if attempts < 3:
                raise RuntimeError(f"attempt {attempts} fails")
            processed.append(order.n)

    async with run_app(app):
        await topic.send(value=Order(n=7))
        await eventually(lambda: processed == [7], timeout=15)
        assert await pending_count(redis_client, "rt-retry-reconnect", "retry-reconnect-group") == 0

    assert await redis_client.xlen("dead-letters") == 0
