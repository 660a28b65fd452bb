"""The consumer's parts, without a server: decoding, retry order, dead-letter after N,
acks, the stream over batches, derived send ids, and when recovery runs.

These are pure state machines (CPU only); the loop that drives them against a real
server is covered by the other runtime tests.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from orderflow.runtime import Envelope, Event, Record, Stream
from orderflow.runtime.acks import AckBuffer
from orderflow.runtime.batch import Batch
from orderflow.runtime.consumer import Consumer
from orderflow.runtime.decoding import EntryDecoder, event_id_of, is_envelope_layout
from orderflow.runtime.failures import FailurePolicy, RetryQueue
from orderflow.runtime.metrics import AgentMetrics
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.send_ids import derived_event_id
from orderflow.runtime.stream import StreamEnded


class Part(Record, event_type="parts.part.v1"):
    n: int


class Other(Record, event_type="parts.other.v1"):
    n: int


def entry(
    seq: int,
    value: Record | None = None,
    *,
    reorder: bool = False,
    envelope: Envelope | None = None,
) -> list[Any]:
    envelope = envelope or Envelope.new(value or Part(n=seq), source="t", key=f"k{seq % 3}")
    items = list(envelope.to_fields().items())
    if reorder:
        items.reverse()
    flat = [part.encode() for pair in items for part in pair]
    return [f"{seq}-0".encode(), flat]


# --------------------------------------------------------------------- decoding
def test_fast_and_slow_layouts_decode_to_the_same_values() -> None:
    envelope = Envelope.new(Part(n=1), source="t")
    fast, slow = entry(1, envelope=envelope), entry(1, reorder=True, envelope=envelope)
    assert is_envelope_layout(fast[1]) and not is_envelope_layout(slow[1])
    assert event_id_of(fast[1]) == event_id_of(slow[1]) is not None
    decoder = EntryDecoder({"parts.part.v1": Part}, max_deliveries=3)
    decoded = decoder.decode([fast, slow])
    assert decoded.values == [Part(n=1), Part(n=1)]
    assert decoded.counts is None  # first deliveries only


def test_decoder_sorts_not_accepted_invalid_trimmed_and_exhausted() -> None:
    decoder = EntryDecoder({"parts.part.v1": Part}, max_deliveries=3)
    bad_payload = entry(2)
    bad_payload[1][15] = b'{"n": "not a number"}'
    not_envelope = [b"3-0", [b"hello", b"world"]]
    decoded = decoder.decode(
        [entry(1), entry(4, Other(n=4)), bad_payload, not_envelope, [b"5-0", None]],
        recovered=[entry(6), entry(7)],
        counts={b"6-0": 4, b"7-0": 2},
    )
    assert decoded.entry_ids == [b"7-0", b"1-0"]  # recovered first, then fresh
    assert decoded.counts == [2, 1]
    assert decoded.not_accepted == [(b"4-0", b"parts.other.v1")]
    assert [item[0] for item in decoded.invalid] == [b"2-0", b"3-0"]
    assert decoded.trimmed == [b"5-0"]
    assert [item[0] for item in decoded.exhausted] == [b"6-0"]


def test_an_untyped_decoder_takes_every_registered_type_and_rejects_unknown_ones() -> None:
    unknown = entry(2)
    unknown[1][3] = b"parts.nobody-registered-this.v9"
    decoded = EntryDecoder(None, max_deliveries=3).decode([entry(1, Other(n=1)), unknown])
    assert decoded.values == [Other(n=1)]
    assert isinstance(decoded.invalid[0][2], LookupError)


# ------------------------------------------------------------ failure policy
def test_retry_queue_hands_out_due_entries_in_due_order() -> None:
    queue = RetryQueue()
    queue.add(b"late", 30.0)
    queue.add(b"early", 10.0)
    queue.add(b"middle", 20.0)
    assert queue.next_due == 10.0
    assert queue.pop_due(25.0, limit=10) == [b"early", b"middle"]
    assert queue.waiting == {b"late", b"early", b"middle"}  # until released
    queue.restore([b"middle"], 26.0)  # its claim failed: again at 26
    assert queue.pop_due(100.0, limit=1) == [b"middle"]
    queue.release([b"early", b"middle"])
    assert queue.waiting == {b"late"}


def test_failure_policy_retries_with_growing_back_off_then_dead_letters_at_n() -> None:
    policy = FailurePolicy(
        RetryPolicy(base=1.0, cap=100.0, max_deliveries=4, jitter=0.0),
        AgentMetrics("parts-agent"),
        agent="parts-agent", stream="s", group="g", consumer="c",
    )  # fmt: skip
    now = 1000.0
    outcomes = [policy.handler_failed(b"1-0", count, ValueError("x"), now) for count in (1, 2, 3)]
    assert outcomes == [False, False, False]
    dues = []
    while (due := policy.retries.next_due) is not None:
        dues.append(due - now)
        policy.retries.pop_due(due, limit=1)
    assert dues == [1.0, 2.0, 4.0]  # base * 2**(delivery - 1)
    assert policy.handler_failed(b"1-0", 4, ValueError("x"), now) is True  # the 4th: dead
    assert policy.retries.next_due is None


# ----------------------------------------------------------------------- acks
def batch_of(*seqs: int) -> Batch:
    entries = [entry(seq) for seq in seqs]
    return Batch(
        None, entries, [Part(n=s) for s in seqs], [e[0] for e in entries],
        [event_id_of(e[1]) or b"" for e in entries],
    )  # fmt: skip


def test_ack_buffer_collects_finished_events_but_not_failed_ones() -> None:
    acks = AckBuffer(recent_limit=100)
    batch = batch_of(1, 2, 3, 4)
    acks.hand(batch)
    batch.done_upto = 3
    batch.failed.add(1)
    acks.collect()
    assert acks.done_entry_ids == [b"1-0", b"3-0"]
    assert acks.busy_entry_ids() == {b"4-0"}  # still in the agent's hands
    first = batch.event_ids[0]
    assert first in acks.owned_event_ids()
    acks.flushed(2, 0)
    assert acks.done_entry_ids == [] and acks.recently_flushed(first)
    assert not acks


def test_a_failed_event_is_owned_while_it_waits_for_a_retry_not_once_dead_lettered() -> None:
    acks = AckBuffer(recent_limit=100)
    batch = batch_of(1, 2)
    acks.hand(batch)
    batch.failed.add(0)  # the body failed it and has not moved on yet (not collected)
    failed, other = batch.event_ids
    assert acks.owned_event_ids({b"1-0"}) == {failed, other}  # retry pending: ours
    assert acks.owned_event_ids() == {other}  # dead-lettered: a replay is not a duplicate


# ----------------------------------------------------------------- the stream
class ListSource:
    """An in-memory batch source: what a Stream reads (no Redis involved)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.latencies: list[float] = []
        self.failures: list[tuple[int, str]] = []

    async def next_batch(self, max_wait: float | None = None) -> Batch | None:
        if not self.batches:
            raise StreamEnded
        return self.batches.pop(0)

    async def failed(self, event: Event[Any], exc: BaseException) -> None:
        self.failures.append((event.value.n, str(exc)))


async def test_stream_marks_done_when_asked_for_the_next_and_fails_what_it_held() -> None:
    first, second = batch_of(1, 2), batch_of(3)
    source = ListSource([first, second])
    stream: Stream[Part] = Stream(source, handler="g/agent")
    seen = []
    async for part in stream:
        seen.append(part.n)
        if part.n == 2:
            break
    assert seen == [1, 2] and first.done_upto == 0  # 2 is still held
    failed = await stream.fail_inflight(RuntimeError("boom"))
    assert [event.value.n for event in failed] == [2] and first.failed == {1}
    assert source.failures == [(2, "boom")]
    assert [part.n async for part in stream] == [3]
    assert first.done_upto == 2 and second.done_upto == 1
    assert len(source.latencies) >= 2


async def test_stream_derives_send_ids_per_event_and_ordinal() -> None:
    batch = batch_of(1, 2)
    stream: Stream[Part] = Stream(ListSource([batch]), handler="g/agent")
    assert stream.child_event_id() is None  # not handling anything yet
    ids: dict[int, list[str | None]] = {}
    async for part in stream:
        ids[part.n] = [stream.child_event_id(), stream.child_event_id()]
    inputs = [eid.decode() for eid in batch.event_ids]
    assert ids == {
        1: [
            derived_event_id("g/agent", [inputs[0]], 0),
            derived_event_id("g/agent", [inputs[0]], 1),
        ],
        2: [
            derived_event_id("g/agent", [inputs[1]], 0),
            derived_event_id("g/agent", [inputs[1]], 1),
        ],
    }


# ------------------------------------------------------------- recovery timing
def test_recovery_drains_first_then_runs_only_when_a_retry_or_a_claim_is_due() -> None:
    consumer = Consumer(
        Redis(),  # never connected: only the state machine runs here
        stream="s", group="g", name="c", agent="a", accepted=None,
        policy=RetryPolicy(max_deliveries=3), claim_interval=5.0,
    )  # fmt: skip
    recovery = consumer.recovery
    now = time.monotonic()
    assert recovery.due(now)  # start: drain own pending entries before reading new ones
    recovery.draining = False
    assert not recovery.due(now)  # steady state: the fast path
    consumer.failures.retries.add(b"9-0", now + 1.0)
    assert not recovery.due(now) and recovery.due(now + 1.0)  # a retry became due
    consumer.failures.retries.clear()
    assert recovery.due(recovery.next_claim)  # time to look for abandoned entries
    recovery.connection_lost()
    assert recovery.due(now)  # replies may be lost: drain again


@pytest.mark.parametrize("count", [1, 5])
def test_consumer_busy_set_covers_handed_and_waiting_entries(count: int) -> None:
    consumer = Consumer(
        Redis(), stream="s", group="g", name="c", agent="a", accepted=None,
        policy=RetryPolicy(max_deliveries=3),
    )  # fmt: skip
    consumer.acks.hand(batch_of(*range(1, count + 1)))
    consumer.failures.retries.add(b"99-0", 0.0)
    assert consumer.busy_entry_ids() == {f"{n}-0".encode() for n in range(1, count + 1)} | {b"99-0"}
