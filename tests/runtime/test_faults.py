"""Fault tests with real processes: SIGKILL, server restart, poison events, SIGTERM.

Every test runs ``orderflow worker tests.runtime.fault_app:app`` subprocesses
against a real server. The app's handler does ``HINCRBY counts <seq> 1`` inside
``event.atomic()``, so after a run the counts hash tells the whole story: a
missing seq is a lost event, a count of 2 a double side effect.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orderflow.runtime.deadletter import DEAD_LETTERS, DeadLetter
from orderflow.runtime.localserver import LocalRedisServer
from tests.runtime.fault_app import COUNTS_KEY, FIXED_KEY, GROUP, STARTED_KEY, STREAM, Work
from tests.runtime.worker_process import ORDERFLOW, WorkerPool, publish_work, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(redis_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def pending_count(client: redis.Redis) -> int:
    return int(client.xpending(STREAM, GROUP)["pending"])


def pending_ids(client: redis.Redis) -> set[str]:
    rows = client.xpending_range(STREAM, GROUP, min="-", max="+", count=10_000)
    return {str(row["message_id"], "ascii") for row in rows}  # type: ignore[arg-type]


def all_done(client: redis.Redis, total: int) -> bool:
    """Every event has its effect and nothing is left pending (all acked)."""
    try:
        return client.hlen(COUNTS_KEY) == total and pending_count(client) == 0
    except redis.ConnectionError:
        return False


def assert_exactly_once(client: redis.Redis, total: int) -> None:
    counts = {int(seq): int(count) for seq, count in client.hgetall(COUNTS_KEY).items()}
    assert set(counts) == set(range(total)), f"lost: {sorted(set(range(total)) - set(counts))[:20]}"
    doubles = {seq: count for seq, count in counts.items() if count != 1}
    assert doubles == {}, f"double side effects: {dict(list(doubles.items())[:20])}"


def test_sigkill_mid_run_second_worker_takes_over_exactly_once(sync_redis, workers):
    total = 10_000
    publish_work(sync_redis, [Work(seq=seq) for seq in range(total)])
    # The first worker can never finish: it stalls forever on seq 9000. It is killed
    # once 9,000 seqs have their effect and it holds entries. Seq 9000 never gets one
    # from it, so it has read seq 9000 or a later one, and entries are read in order:
    # seq 9000 is delivered, never acked, and pending whenever the kill lands. (Killed
    # at 2,000 effects instead, the kill could land after a batch was acked and before
    # the next read, with nothing pending: seen once on a fast machine.)
    first = workers.start(env={"FAULT_STALL_AT": "9000"})
    wait_until(
        lambda: sync_redis.hlen(COUNTS_KEY) >= 9_000 and pending_count(sync_redis) > 0,
        timeout=90,
        what="first worker stalled on seq 9000",
    )

    first.signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert sync_redis.hlen(COUNTS_KEY) < total
    assert pending_count(sync_redis) > 0  # it died holding delivered, unacked entries

    second = workers.start()
    wait_until(lambda: all_done(sync_redis, total), timeout=90, what="second worker to finish")

    assert_exactly_once(sync_redis, total)
    assert sync_redis.xlen(DEAD_LETTERS) == 0
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0


def test_server_restart_mid_run_worker_reconnects_and_nothing_is_lost(
    fresh_server: LocalRedisServer, tmp_path: Path
):
    total = 3_000  # AOF with appendfsync always: every effect is an fsync, keep it short
    client = redis.Redis.from_url(fresh_server.url)
    pool = WorkerPool(fresh_server.url, tmp_path)
    try:
        publish_work(client, [Work(seq=seq) for seq in range(total)])
        worker = pool.start()
        wait_until(lambda: client.hlen(COUNTS_KEY) >= 500, timeout=90, what="worker under way")

        before_restart = client.hlen(COUNTS_KEY)
        run_id = client.info("server")["run_id"]
        client.close()
        fresh_server.restart()  # SIGTERM (AOF flushed), same port and data directory
        assert before_restart < total

        client = redis.Redis.from_url(fresh_server.url)
        assert client.info("server")["run_id"] != run_id  # a new server process
        wait_until(lambda: all_done(client, total), timeout=90, what="all events after restart")

        assert_exactly_once(client, total)
        assert client.xlen(DEAD_LETTERS) == 0
        assert worker.alive()  # the same worker process rode out the restart
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        pool.close()
        client.close()


def test_poison_event_is_dead_lettered_then_replayed_and_processed_once_fixed(
    sync_redis, workers, redis_url
):
    publish_work(sync_redis, [Work(seq=seq, poison=seq == 5) for seq in range(10)])
    worker = workers.start(env={"FAULT_MAX_DELIVERIES": "3"})

    wait_until(
        lambda: sync_redis.xlen(DEAD_LETTERS) == 1 and sync_redis.hlen(COUNTS_KEY) == 9,
        timeout=60,
        what="poison event in dead-letters, the others processed",
    )
    (letter_id, fields), *_ = sync_redis.xrange(DEAD_LETTERS)
    letter = DeadLetter.from_entry(letter_id, fields)
    assert (letter.stream, letter.group) == (STREAM, GROUP)
    assert letter.delivery_count == 3
    assert letter.error_type == "PoisonError"
    assert "seq 5" in letter.error_message and "PoisonError" in letter.traceback
    assert sync_redis.hget(COUNTS_KEY, "5") is None
    wait_until(lambda: pending_count(sync_redis) == 0, timeout=30, what="poison acked on source")

    listed = subprocess.run(
        [str(ORDERFLOW), "dlq", "list", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0 and "PoisonError" in listed.stdout

    sync_redis.set(FIXED_KEY, "1")  # the fix is deployed
    replayed = subprocess.run(
        [str(ORDERFLOW), "dlq", "replay", "--all", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "1 replayed, 0 failed" in replayed.stdout

    wait_until(lambda: all_done(sync_redis, 10), timeout=60, what="replayed event processed")
    assert_exactly_once(sync_redis, 10)
    assert sync_redis.xlen(DEAD_LETTERS) == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_sigterm_finishes_and_acks_in_flight_events_and_exits_0(sync_redis, workers):
    works = [Work(seq=0, sleep=2.0), *(Work(seq=seq) for seq in range(1, 6))]
    entry_ids = publish_work(sync_redis, works)
    worker = workers.start(env={"FAULT_SHUTDOWN_TIMEOUT": "20"})
    wait_until(lambda: sync_redis.hexists(STARTED_KEY, "0"), timeout=60, what="slow event started")

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20 + 40) == 0

    # The event in the handler when SIGTERM came was finished (its effect) and acked.
    assert sync_redis.hget(COUNTS_KEY, "0") == b"1"
    still_pending = pending_ids(sync_redis)
    assert entry_ids[0] not in still_pending
    finished = {int(seq) for seq in sync_redis.hkeys(COUNTS_KEY)}
    assert not {entry_ids[seq] for seq in finished} & still_pending  # finished => acked

    # Nothing the first worker left behind is lost: a new worker completes the rest.
    successor = workers.start()
    successor.wait_ready(timeout=60)
    wait_until(lambda: all_done(sync_redis, len(works)), timeout=60, what="the rest processed")
    assert_exactly_once(sync_redis, len(works))
    successor.signal(signal.SIGTERM)
    assert successor.wait(timeout=60) == 0
