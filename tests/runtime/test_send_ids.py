"""Derived send ids: a handler that sends and is then retried re-sends the same ids.

The rule is in :mod:`orderflow.runtime.send_ids`. Each test counts effects downstream
(``HINCRBY`` inside ``event.atomic()``): one per charge, however often the handler
that sent it ran. Against a real server; the SIGKILL case with real processes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from orderflow.runtime import App, Envelope, Record, Stream, correlation
from orderflow.runtime.send_ids import derived_event_id
from orderflow.runtime.testing import eventually, run_app
from tests.runtime.resend_app import CHARGES, EFFECTS_KEY, ORDERS, Order, build_app
from tests.runtime.worker_process import WorkerPool, wait_until


async def _effects(redis_client) -> dict[str, int]:
    raw = await redis_client.hgetall(EFFECTS_KEY)
    return {key.decode(): int(value) for key, value in raw.items()}


async def _charge_ids(redis_client) -> list[str]:
    entries = await redis_client.xrange(CHARGES)
    return [fields[b"event_id"].decode() for _, fields in entries]


async def test_a_handler_failing_n_minus_1_times_has_one_effect_per_send(redis_client, redis_url):
    app = build_app(broker=redis_url, max_deliveries=5)
    orders = app.topics[ORDERS]
    async with run_app(app):
        await app.redis.delete(EFFECTS_KEY)
        await orders.send(value=Order(order_id="o-1", lines=3, fail_times=4))
        await eventually(lambda: _effects(redis_client), timeout=20)
        await eventually(lambda: _pending_zero(redis_client, ORDERS, "relay-group"), timeout=20)
    ids = await _charge_ids(redis_client)
    assert len(ids) == 15  # 5 runs x 3 sends: every run sent again...
    assert len(set(ids)) == 3  # ...with the same three ids
    assert await _effects(redis_client) == {"o-1:0": 1, "o-1:1": 1, "o-1:2": 1}


async def _pending_zero(redis_client, stream: str, group: str) -> bool:
    return int((await redis_client.xpending(stream, group))["pending"]) == 0


async def test_derived_ids_follow_the_rule_and_differ_per_input_agent_and_ordinal(
    redis_client, redis_url
):
    app = build_app(broker=redis_url)
    orders = app.topics[ORDERS]
    async with run_app(app):
        await orders.send(value=Order(order_id="o-a", lines=2))
        await orders.send(value=Order(order_id="o-b", lines=2))
        await eventually(lambda: _count(redis_client, CHARGES, 4), timeout=20)
    order_entries = await redis_client.xrange(ORDERS)
    order_ids = [fields[b"event_id"].decode() for _, fields in order_entries]
    relay = next(agent for agent in app.agents if agent.group == "relay-group")
    expected = [
        derived_event_id(relay.handler_id, [order_id], ordinal)
        for order_id in order_ids
        for ordinal in range(2)
    ]
    assert await _charge_ids(redis_client) == expected
    assert len(set(expected)) == 4


async def _count(redis_client, stream: str, n: int) -> bool:
    return int(await redis_client.xlen(stream)) >= n


class Tick(Record, event_type="resend.tick.v1"):
    n: int


async def test_sends_outside_a_handler_keep_random_ids(redis_client, redis_url):
    app = App("resend-plain", broker=redis_url)
    ticks = app.topic("resend-ticks", value_type=Tick)
    first = ticks.envelope(Tick(n=1))
    with correlation("c-1"):
        second = ticks.envelope(Tick(n=1))
    assert first.event_id != second.event_id
    assert second.correlation_id == "c-1"
    assert isinstance(Envelope.model_validate(second.model_dump()), Envelope)


async def test_take_lists_derive_from_every_input_of_the_list(redis_client, redis_url):
    app = App("resend-take", broker=redis_url, retry_base=0.01, retry_cap=0.02)
    ticks = app.topic("resend-take-in", value_type=Tick)
    out = app.topic("resend-take-out", value_type=Tick)
    runs: list[int] = []

    @app.agent(ticks, group="take-group")
    async def batcher(stream: Stream[Tick]) -> None:
        async for values in stream.take(3, within=0.5):
            await out.send(value=Tick(n=sum(v.n for v in values)))
            runs.append(len(values))
            if len(runs) == 1:
                raise RuntimeError("first run of the list fails after sending")

    for n in range(3):
        await ticks.send(value=Tick(n=n))
    async with run_app(app):
        await eventually(lambda: len(runs) >= 2, timeout=20)
    sent = await redis_client.xrange("resend-take-out")
    ids = [fields[b"event_id"].decode() for _, fields in sent]
    inputs = [fields[b"event_id"].decode() for _, fields in await redis_client.xrange(ORDERS)]
    assert inputs == []  # this test uses its own streams only
    assert len(ids) >= 2
    # The first run's list had all three inputs; its send id is derived from them.
    in_ids = [
        fields[b"event_id"].decode() for _, fields in await redis_client.xrange("resend-take-in")
    ]
    assert ids[0] == derived_event_id(batcher.handler_id, in_ids[: runs[0]], 0)


@pytest.mark.slow
def test_sigkill_between_send_and_ack_has_no_duplicate_effect(
    sync_redis, redis_url, tmp_path: Path
):
    pool = WorkerPool(redis_url, tmp_path)
    app = "tests.runtime.resend_app:app"
    try:
        publisher = build_app("resend-publisher", broker=redis_url)
        envelope = publisher.topics[ORDERS].envelope(Order(order_id="o-k", lines=2, die=True))
        sync_redis.xadd(ORDERS, envelope.to_fields())
        first = pool.start(app=app)
        assert first.wait(timeout=60) == -signal.SIGKILL  # killed itself after sending
        assert sync_redis.xlen(CHARGES) == 2
        second = pool.start(app=app)
        wait_until(
            lambda: (
                int(sync_redis.xpending(ORDERS, "relay-group")["pending"]) == 0
                and sync_redis.hlen(EFFECTS_KEY) == 2
                and int(sync_redis.xpending(CHARGES, "charge-group")["pending"]) == 0
                and sync_redis.xlen(CHARGES) == 4
            ),
            timeout=60,
            what="the second worker to re-run the order and drop the re-sent charges",
        )
        entries = sync_redis.xrange(CHARGES)
        ids = [fields[b"event_id"] for _, fields in entries]
        assert len(ids) == 4 and len(set(ids)) == 2  # sent twice, the same two ids
        effects = {k.decode(): int(v) for k, v in sync_redis.hgetall(EFFECTS_KEY).items()}
        assert effects == {"o-k:0": 1, "o-k:1": 1}
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        pool.close()
