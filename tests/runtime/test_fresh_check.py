"""First deliveries of publish-once entries skip the dedupe check, and nothing is handled
twice for it: copies appended any other way, a group moved back (``XGROUP SETID``,
re-created after ``NOGROUP``) and a replayed dead letter are still checked
(:mod:`orderflow.runtime.fresh_check`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from orderflow.runtime import App, Envelope, Record, deadletter
from orderflow.runtime.consumer import Consumer
from orderflow.runtime.decoding import event_id_of
from orderflow.runtime.fresh_check import ONCE_FIELD, FreshCheck, parse_entry_id
from orderflow.runtime.testing import eventually, run_app


class Payment(Record, event_type="rt.fresh.payment.v1"):
    payment_id: str


def make_app(redis_url: str, **options: Any) -> App:
    defaults = {"block_ms": 50, "claim_interval": 0.2, "scheduler_interval": 0.05}
    return App("rt-fresh", broker=redis_url, **{**defaults, **options})


def duplicates(agent: str) -> float:
    value = REGISTRY.get_sample_value(
        "orderflow_events_skipped_total", {"agent": agent, "reason": "duplicate"}
    )
    return value or 0.0


async def group_caught_up(redis_client: Any, stream: str, group: str) -> bool:
    """Every entry of ``stream`` delivered to ``group`` and acked."""
    [last] = await redis_client.xrevrange(stream, count=1)
    [info] = [g for g in await redis_client.xinfo_groups(stream) if g["name"] == group.encode()]
    return info["last-delivered-id"] == last[0] and info["pending"] == 0


async def send_once(topic: Any, payment_id: str) -> str:
    envelope = topic.envelope(Payment(payment_id=payment_id))
    assert await topic.send_envelope(envelope, once=True)
    return str(envelope.event_id)


async def forget_flushed(consumer: Consumer, event_ids: list[str]) -> None:
    """Clear the consumer's memory of the ids it acked lately (once it has them all), so
    that only the Redis check can drop a copy of them."""
    wanted = [event_id.encode() for event_id in event_ids]
    await eventually(lambda: all(consumer.acks.recently_flushed(e) for e in wanted))
    consumer.acks.forget_recent()


def consumer_of(app: App) -> Consumer:
    [agent] = app.agents
    [consumer] = agent.consumers
    return consumer


# ------------------------------------------------------------- the parts, no server
def flat(envelope: Envelope, *, once: bool) -> list[bytes]:
    items = [part.encode() for pair in envelope.to_fields().items() for part in pair]
    return [*items, ONCE_FIELD, b"1"] if once else items


def test_only_unmarked_or_old_entries_are_checked() -> None:
    envelopes = [Envelope.new(Payment(payment_id=f"p{n}"), source="t") for n in range(4)]
    check = FreshCheck("agent", "stream")
    entries = [
        [b"5-0", flat(envelopes[0], once=True)],  # at the watermark: checked
        [b"6-0", flat(envelopes[1], once=True)],  # above, once: skipped
        [b"6-1", flat(envelopes[2], once=False)],  # above, a plain XADD: checked
        [b"7-0", flat(envelopes[3], once=True)],  # above, once: skipped
    ]
    ids = [envelope.event_id.encode() for envelope in envelopes]
    assert check.ids_to_check(entries, event_id_of) == ids  # no watermark yet: all
    check.watermark, check.last_read = (5, 0), (4, 0)
    assert check.ids_to_check(entries, event_id_of) == [ids[0], ids[2]]
    assert check.skipped == 2
    # The group went back: a read starting at or before the last entry read is checked
    # whole, and the watermark is read again before the next read.
    assert check.ids_to_check(entries[1:], event_id_of) == ids[1:]
    assert check.watermark is None and check.last_read == (7, 0)


def test_entry_ids_compare_as_pairs() -> None:
    assert parse_entry_id(b"1700000000000-10") > parse_entry_id("1700000000000-9")
    assert parse_entry_id(b"9-0") < parse_entry_id(b"10-0")


# --------------------------------------------------------------- against a server
async def test_once_entries_skip_the_check_and_plain_copies_are_dropped(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-fresh-once", value_type=Payment)
    handled: list[str] = []

    @app.agent(topic, group="ledger", name="rt-fresh-ledger")
    async def ledger(stream):
        async for value in stream:
            handled.append(value.payment_id)

    envelopes = [topic.envelope(Payment(payment_id=f"p{n}")) for n in range(20)]
    async with run_app(app):
        consumer = consumer_of(app)
        await eventually(lambda: consumer.fresh.watermark is not None)
        for envelope in envelopes:
            assert await topic.send_envelope(envelope, once=True) is not None
        await eventually(lambda: len(handled) == 20)
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-once", "ledger"))
        assert consumer.fresh.skipped == 20
        # A second publish-once of the same event appends nothing ...
        assert await topic.send_envelope(envelopes[0], once=True) is None
        # ... and copies appended any other way carry no `once`: checked, dropped (by the
        # check alone: the consumer's memory of its recent acks is cleared first).
        await forget_flushed(consumer, [envelope.event_id for envelope in envelopes])
        for envelope in envelopes[:3]:
            await redis_client.xadd("rt-fresh-once", envelope.to_fields())
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-once", "ledger"))
    entries = await redis_client.xrange("rt-fresh-once")
    assert [list(fields)[-1] for _, fields in entries] == [ONCE_FIELD] * 20 + [b"payload"] * 3
    assert handled == [f"p{n}" for n in range(20)]
    assert duplicates("rt-fresh-ledger") == 3
    assert consumer.fresh.skipped == 20


async def test_a_group_moved_back_handles_nothing_twice(redis_client, redis_url, caplog):
    app = make_app(redis_url, read_count=4)  # the ten come back in three reads
    topic = app.topic("rt-fresh-setid", value_type=Payment)
    handled: list[str] = []

    @app.agent(topic, group="books", name="rt-fresh-books")
    async def books(stream):
        async for value in stream:
            handled.append(value.payment_id)

    async with run_app(app):
        consumer = consumer_of(app)
        await eventually(lambda: consumer.fresh.watermark is not None)
        sent = [await send_once(topic, f"s{n}") for n in range(10)]
        await eventually(lambda: len(handled) == 10)
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-setid", "books"))
        # Moved back by someone else while the consumer runs: the next read starts at
        # the first entry again, which is not newer than what it read before (its memory
        # of recent acks is cleared, so only the check can drop them).
        await forget_flushed(consumer, sent)
        await redis_client.xgroup_setid("rt-fresh-setid", "books", "0")
        await eventually(lambda: duplicates("rt-fresh-books") == 10)
        # Destroyed: the consumer sees NOGROUP, re-creates the group from the start and
        # reads the watermark again; the ten come back a third time, and are dropped.
        await redis_client.xgroup_destroy("rt-fresh-setid", "books")
        await eventually(lambda: duplicates("rt-fresh-books") == 20)
        await send_once(topic, "s10")
        await eventually(lambda: len(handled) == 11)
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-setid", "books"))
    assert handled == [f"s{n}" for n in range(11)]
    assert duplicates("rt-fresh-books") == 20
    went_back = [r for r in caplog.records if "went back" in r.getMessage()]
    assert len(went_back) == 2  # once per move back, not once per read catching up


async def test_a_replayed_dead_letter_is_checked_by_every_group(redis_client, redis_url):
    app = make_app(redis_url)
    topic = app.topic("rt-fresh-replay", value_type=Payment)
    audited: list[str] = []
    charged: list[str] = []
    broken = True

    @app.agent(topic, group="audit", name="rt-fresh-audit")
    async def audit(stream):
        async for value in stream:
            audited.append(value.payment_id)

    @app.agent(topic, group="charge", name="rt-fresh-charge", max_deliveries=1)
    async def charge(stream):
        async for value in stream:
            if broken:
                raise RuntimeError("card service down")
            charged.append(value.payment_id)

    async with run_app(app):
        await eventually(lambda: all(a.consumers[0].fresh.watermark for a in app.agents))
        r1 = await send_once(topic, "r1")
        await eventually(lambda: redis_client.xlen("dead-letters"))
        await eventually(lambda: audited == ["r1"])
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-replay", "audit"))
        broken = False
        [letter] = [
            letter async for letter in deadletter.iter_dead_letters(redis_client, "rt-fresh-replay")
        ]
        assert letter.raw["once"] == "1"
        await forget_flushed(app.agents[0].consumers[0], [r1])  # only the check may drop it
        await deadletter.replay(redis_client, letter)
        await eventually(lambda: charged == ["r1"])
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-replay", "audit"))
    assert audited == ["r1"]  # the copy was checked, and dropped, by the group that had it
    assert duplicates("rt-fresh-audit") == 1
    [_, (_, replayed)] = await redis_client.xrange("rt-fresh-replay")
    assert ONCE_FIELD not in replayed


async def test_a_restarted_consumer_checks_what_was_there_before_it_joined(redis_client, redis_url):
    handled: list[str] = []

    def build() -> tuple[App, Any]:
        app = make_app(redis_url)
        topic = app.topic("rt-fresh-restart", value_type=Payment)

        @app.agent(topic, group="tills", name="rt-fresh-tills")
        async def tills(stream):
            async for value in stream:
                handled.append(value.payment_id)

        return app, topic

    first, topic = build()
    async with run_app(first):
        await eventually(lambda: consumer_of(first).fresh.watermark is not None)
        for n in range(5):
            await send_once(topic, f"t{n}")
        await eventually(lambda: len(handled) == 5)
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-restart", "tills"))
    # Moved back while no consumer ran: a new one has no memory of what it read, so
    # only its watermark (the stream's last entry when it joined) makes it check them.
    await redis_client.xgroup_setid("rt-fresh-restart", "tills", "0")
    second, topic = build()
    async with run_app(second):
        await eventually(lambda: duplicates("rt-fresh-tills") == 5)
        await send_once(topic, "t5")
        await eventually(lambda: len(handled) == 6)
        await eventually(lambda: group_caught_up(redis_client, "rt-fresh-restart", "tills"))
        assert consumer_of(second).fresh.skipped == 1
    assert handled == [f"t{n}" for n in range(6)]
