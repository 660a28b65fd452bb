"""Deferred "published" marks (``orderflow.agents.publish_marks``), on a real Valkey and
a real SQLite file or PostgreSQL database.

What is proven: the rows a publish leaves unmarked are marked by the buffer's flush, and
N publishes cost far fewer ``mark_published`` calls than N (counted by the
``orderflow_outbox_mark_seconds`` histogram); a process SIGKILLed before its flush
leaves rows the relay re-publishes without appending anything twice, then marks; a
store that refuses the flush keeps the ids for a later flush, in the foreground and in
the background; an App's stop flushes. No test waits a fixed time: flushes are awaited
(``flush``, ``close``, ``App.stop``) or polled for with ``eventually``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from pydantic import ValidationError

from orderflow.agents.orders import create_orders_app
from orderflow.agents.outbox import publish_outbox, relay_once
from orderflow.agents.placement import place_order
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.agents.settings import Settings, get_settings
from orderflow.agents.store_provider import published_marks_for
from orderflow.agents.topics import ORDER_STATUS_STREAM, ORDERS_STREAM, SIMULATE_ORDER_STREAM
from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import OrderStatusReported
from orderflow.models.store import Store, StoreUnavailable, opened_store
from orderflow.runtime import App
from orderflow.runtime.testing import eventually, run_app
from tests.system.conftest import envelopes_for_order
from tests.system.test_outbox import ROOT

CRASH_SCRIPT = Path(__file__).with_name("crash_before_mark.py")
LINES = [OrderLineRequest(item_id="margherita", quantity=1)]
HOUR = 3600.0  # a flush interval no test reaches: only an explicit flush, a full batch
# or a close writes


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test here runs on SQLite and on PostgreSQL (``store`` opens this URL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orderflow.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def mark_calls() -> float:
    """``mark_published`` calls made by the outbox code of this process so far."""
    return REGISTRY.get_sample_value("orderflow_outbox_mark_seconds_count") or 0.0


async def place(store: Store, publisher: App, marks: PublishedMarks, orders: int) -> list[str]:
    """Place ``orders`` orders with deferred marks; their outbox ids."""
    await store.set_stock("margherita", orders + 1)
    ids: list[str] = []
    for _ in range(orders):
        result = await place_order(store, publisher, LINES, marks=marks)
        ids.extend(message.id for message in result.outbox)
    return ids


async def test_publishes_are_marked_by_the_flush_in_far_fewer_calls(
    store: Store, publisher: App
) -> None:
    marks = PublishedMarks(store, interval=HOUR, batch=10)
    calls_before = mark_calls()
    ids = await place(store, publisher, marks, orders=25)  # 50 events, published at once
    assert len(ids) == 50
    # Every full batch of 10 is written in the background, one call each, by itself.
    await eventually(lambda: marks.pending == 0, timeout=30)
    assert await store.outbox_pending(limit=100) == []
    assert mark_calls() - calls_before == 5  # 50 publishes, 5 mark transactions
    await marks.close()
    assert mark_calls() - calls_before == 5  # nothing was left for the close


async def test_one_flush_marks_everything_published_meanwhile(store: Store, publisher: App) -> None:
    marks = PublishedMarks(store, interval=HOUR)
    calls_before = mark_calls()
    ids = await place(store, publisher, marks, orders=10)
    assert {m.id for m in await store.outbox_pending(limit=100)} == set(ids)  # deferred
    assert await marks.flush() == len(ids)
    assert mark_calls() - calls_before == 1
    assert await store.outbox_pending(limit=100) == []
    await marks.close()
    assert mark_calls() - calls_before == 1  # nothing left: the close wrote nothing


async def test_killed_before_the_flush_the_relay_marks_and_appends_nothing_twice(
    store: Store, store_url: str, redis_url: str, redis_client: aioredis.Redis, publisher: App
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CRASH_SCRIPT), store_url, redis_url, "margherita",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == -9, stderr.decode()
    order_id = stdout.decode().strip()

    # Published, not marked: the flush never came.
    pending = await store.outbox_pending(limit=100)
    assert sorted(m.stream for m in pending) == [ORDERS_STREAM, SIMULATE_ORDER_STREAM]
    assert len(await envelopes_for_order(redis_client, ORDERS_STREAM, order_id)) == 1

    already = "orderflow_outbox_already_published_total"
    skipped_before = REGISTRY.get_sample_value(already) or 0.0
    marks = PublishedMarks(store, interval=HOUR)
    assert await relay_once(publisher, store, min_age_seconds=0, marks=marks) == 2
    assert (REGISTRY.get_sample_value(already) or 0.0) - skipped_before == 2  # both no-ops
    assert await store.outbox_pending(limit=100) == []  # the relay flushed its marks
    assert marks.pending == 0
    for stream in (ORDERS_STREAM, SIMULATE_ORDER_STREAM):
        envelopes = await envelopes_for_order(redis_client, stream, order_id)
        assert [e.event_id for e in envelopes] == [m.id for m in pending if m.stream == stream]
    await marks.close()


@contextlib.contextmanager
def sqlite_write_lock(store_url: str) -> Iterator[None]:
    """Another connection holding SQLite's write lock: every write of the store waits."""
    conn = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def outbox_locked(store_url: str) -> AsyncIterator[None]:
    """The outbox table locked against writes by another session, until the block ends."""
    if store_url.startswith("sqlite"):
        with sqlite_write_lock(store_url):
            yield
        return
    import asyncpg

    conn = await asyncpg.connect(store_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE outbox IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


@pytest.fixture
async def impatient_store(store: Store, store_url: str) -> AsyncIterator[Store]:
    """A second store on the same database that gives up on a write after 0.5 s."""
    async with opened_store(store_url, deadline=0.5) as impatient:
        yield impatient


async def test_a_failed_flush_keeps_the_ids_and_a_later_flush_marks_them(
    store: Store, impatient_store: Store, store_url: str, publisher: App
) -> None:
    marks = PublishedMarks(impatient_store, interval=HOUR)
    ids = await place(store, publisher, marks, orders=3)
    async with outbox_locked(store_url):
        with pytest.raises(StoreUnavailable):
            await marks.flush()
        assert marks.pending == len(ids)  # kept for the next flush
    assert len(await store.outbox_pending(limit=100)) == len(ids)
    assert await marks.flush() == len(ids)
    assert await store.outbox_pending(limit=100) == []
    await marks.close()


def failed_flushes() -> float:
    return REGISTRY.get_sample_value("orderflow_outbox_mark_failures_total") or 0.0


async def test_the_background_flush_retries_until_the_store_takes_the_marks(
    store: Store, impatient_store: Store, store_url: str, publisher: App, dead_publisher: App
) -> None:
    # Orders committed while Redis was down: their rows wait, unpublished.
    messages = [
        message
        for _ in range(3)
        for message in (await place_order(store, dead_publisher, LINES)).outbox
    ]
    marks = PublishedMarks(impatient_store, interval=0.05)
    failures_before = failed_flushes()
    async with outbox_locked(store_url):  # the store refuses writes; Redis is back
        assert await publish_outbox(publisher, impatient_store, messages, marks=marks) == 6
        await eventually(lambda: failed_flushes() > failures_before, timeout=30)
        assert marks.pending == len(messages)

    async def all_marked() -> bool:
        return await store.outbox_pending(limit=100) == []

    await eventually(all_marked, timeout=30)  # retried in the background, nothing lost
    assert marks.pending == 0
    await marks.close()


async def test_stopping_a_worker_flushes_its_marks(
    store: Store,
    redis_url: str,
    redis_client: aioredis.Redis,
    publisher: App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The orders worker's marks, deferred for an hour, are written by its App's stop."""
    monkeypatch.setenv("ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS", str(HOUR))
    monkeypatch.setenv("ORDERFLOW_OUTBOX_RELAY_MIN_AGE_SECONDS", str(10 * HOUR))
    monkeypatch.setenv("ORDERFLOW_DEDUPE_TTL_SECONDS", str(int(1000 * HOUR)))
    get_settings.cache_clear()
    try:
        order = (await place_order(store, publisher, LINES)).order  # marked at once
        orders_app = create_orders_app(broker=redis_url, store=store)
        async with run_app(orders_app):
            report = OrderStatusReported(order_id=order.id, status="confirmed", at=utc_now())
            await orders_app.topics[ORDER_STATUS_STREAM].send(value=report, key=order.id)

            async def published() -> bool:
                updated = "order.status_updated.v1"
                found = await envelopes_for_order(redis_client, ORDERS_STREAM, order.id, updated)
                return len(found) == 1

            await eventually(published, timeout=30)
            assert len(await store.outbox_pending(limit=100)) == 1  # its mark is deferred
        assert await store.outbox_pending(limit=100) == []  # the stop flushed it
    finally:
        get_settings.cache_clear()


def test_the_settings_keep_the_relay_behind_the_marks_and_the_markers_beyond_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OUTBOX_MARK_INTERVAL_SECONDS",
        "OUTBOX_RELAY_MIN_AGE_SECONDS",
        "DEDUPE_TTL_SECONDS",
    ):
        monkeypatch.delenv(f"ORDERFLOW_{name}", raising=False)
    with pytest.raises(ValidationError, match="OUTBOX_RELAY_MIN_AGE_SECONDS"):
        Settings(outbox_mark_interval_seconds=1.0)  # the relay's 5 s would race the flushes
    with pytest.raises(ValidationError, match="DEDUPE_TTL_SECONDS"):
        Settings(dedupe_ttl_seconds=30)  # markers gone before the relay reaches a row
    assert Settings(outbox_mark_interval_seconds=0.5).outbox_relay_min_age_seconds == 5.0


async def test_an_interval_of_zero_defers_nothing(store: Store) -> None:
    """The baseline: no buffer, so each publish marks its own rows at once."""
    assert published_marks_for(store, Settings(outbox_mark_interval_seconds=0)) is None
    deferred = published_marks_for(store, Settings())
    assert deferred is not None and deferred.interval == 0.25
    await deferred.close()
