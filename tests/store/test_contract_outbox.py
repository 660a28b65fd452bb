"""The store contract for the outbox, run against every adapter (see conftest)."""

from __future__ import annotations

import time

import pytest

from orderflow.models.store import (
    Store,
)
from orderflow.runtime.context import correlation
from orderflow.runtime.testing import eventually
from tests.store.conftest import backdate_outbox
from tests.store.factories import (
    line,
    place,
)

# ---------------------------------------------------------------- outbox


async def test_outbox_pending_and_mark_published(menu_store: Store) -> None:
    store = menu_store
    first = await place(store, line("pizza", 1))
    second = await place(store, line("cola", 1))
    written = [m.id for m in first.outbox + second.outbox]

    assert [m.id for m in await store.outbox_pending()] == written  # oldest first
    assert [m.id for m in await store.outbox_pending(limit=3)] == written[:3]
    assert await store.outbox_pending(min_age_seconds=3600) == []  # all too young for the relay

    await store.mark_published(written[:2])
    assert [m.id for m in await store.outbox_pending()] == written[2:]
    await store.mark_published(written[:2])  # marking twice is harmless
    await store.mark_published([])
    await store.mark_published(written[2:])
    assert await store.outbox_pending() == []


async def clock_passes(moment: float) -> None:
    """Return once ``time.time()`` is past ``moment`` (usually at once; a coarse clock waits)."""
    await eventually(lambda: time.time() > moment, interval=0.001)


async def test_prune_outbox_deletes_only_rows_published_before_the_cutoff(
    menu_store: Store,
) -> None:
    store = menu_store
    old_published = [m.id for m in (await place(store, line("pizza", 1))).outbox]
    old_pending = [m.id for m in (await place(store, line("cola", 1))).outbox]
    recent_published = [m.id for m in (await place(store, line("last-slice", 1))).outbox]
    await store.mark_published(old_published)
    await backdate_outbox(store, old_published + old_pending, seconds=7200)
    await store.mark_published(recent_published)
    published_by = time.time()

    # Two hours old and published: gone. Two hours old but pending, or published
    # just now: kept.
    assert await store.prune_outbox(published_before_seconds=3600) == len(old_published)
    assert await store.prune_outbox(published_before_seconds=3600) == 0
    assert [m.id for m in await store.outbox_pending()] == old_pending
    # The recent rows were still there: a zero retention takes them, and still
    # not the pending ones.
    await clock_passes(published_by)
    assert await store.prune_outbox(published_before_seconds=0) == len(recent_published)
    assert [m.id for m in await store.outbox_pending()] == old_pending
    # Marking a pruned id again is harmless and does not bring it back.
    await store.mark_published(old_published)
    assert await store.prune_outbox(published_before_seconds=0) == 0


async def test_prune_outbox_never_deletes_pending_rows(menu_store: Store) -> None:
    store = menu_store
    published = [m.id for m in (await place(store, line("pizza", 2))).outbox]
    pending = [m.id for m in (await place(store, line("cola", 2))).outbox]
    await backdate_outbox(store, pending, seconds=30 * 86_400)
    await store.mark_published(published)
    published_by = time.time()

    assert await store.prune_outbox(published_before_seconds=86_400) == 0  # all too recent
    await clock_passes(published_by)
    assert await store.prune_outbox(published_before_seconds=0) == len(published)
    assert [m.id for m in await store.outbox_pending()] == pending  # a month old, still there
    with pytest.raises(ValueError):
        await store.prune_outbox(published_before_seconds=-1)
    assert await store.prune_outbox(published_before_seconds=0) == 0


async def test_events_built_in_the_transaction_keep_the_callers_correlation(
    menu_store: Store,
) -> None:
    with correlation("request-42"):
        result = await place(menu_store, line("pizza", 1))
    assert {m.envelope.correlation_id for m in result.outbox} == {"request-42"}
    assert {m.envelope.correlation_id for m in await menu_store.outbox_pending()} == {"request-42"}
