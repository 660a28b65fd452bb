"""``orderflow.web.heap_freeze``: survivors of a full collection leave the collector's
walk until enough connections have closed, then are handed back (and freed if garbage).

In-process against CPython's real collector (no server needed: what is frozen is this
process's heap); each test uninstalls what it installed, so the suite's own process
gets its collector back as it was.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from orderflow.web import heap_freeze
from orderflow.web.heap_freeze import HeapFreeze

THAW_AFTER = 3


class Node:
    """A cycle of two of these is garbage only the cyclic collector can free."""

    partner: Node | None = None


def cycle() -> Node:
    """One node of a two-node cycle: garbage once the caller drops it."""
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    return first


async def next_turns() -> None:
    """Let the loop run what a collection scheduled (the freeze runs on the loop)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
async def installed() -> AsyncIterator[HeapFreeze]:
    freeze = HeapFreeze(THAW_AFTER)
    freeze.install()
    try:
        yield freeze
    finally:
        freeze.uninstall()
        assert gc.get_freeze_count() == 0 and heap_freeze.installed() is None


async def test_install_freezes_what_start_up_built(installed: HeapFreeze) -> None:
    assert heap_freeze.installed() is installed
    assert installed.freezes == 1 and gc.get_freeze_count() > 0


async def test_a_frozen_cycle_waits_for_the_thaw_after_enough_closed_connections(
    installed: HeapFreeze,
) -> None:
    node = cycle()  # alive at the next freeze (a connection's objects, say)
    node_ref = weakref.ref(node)
    before = installed.freezes
    gc.collect()  # a full collection; its survivors are frozen on the loop's next turn
    await next_turns()
    assert installed.freezes > before
    del node  # now garbage (the connection closed), but frozen: no collection walks it
    gc.collect()
    assert node_ref() is not None
    for _ in range(THAW_AFTER - 1):
        heap_freeze.connection_closed()
    gc.collect()
    assert node_ref() is not None and installed.thaws == 0
    heap_freeze.connection_closed()  # the THAW_AFTER-th: everything back to the collector
    assert installed.thaws == 1 and installed.closed_since_thaw == 0
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert node_ref() is None


async def test_garbage_made_after_a_freeze_is_collected_as_usual(installed: HeapFreeze) -> None:
    gc.collect()
    await next_turns()
    node_ref = weakref.ref(cycle())  # born after the freeze, garbage at once
    gc.collect()
    assert node_ref() is None and installed.thaws == 0


async def test_uninstall_hands_everything_back_and_stops_counting() -> None:
    freeze = HeapFreeze(THAW_AFTER)
    freeze.install()
    freeze.uninstall()
    assert gc.get_freeze_count() == 0 and heap_freeze.installed() is None
    heap_freeze.connection_closed()  # nobody installed: nothing counted, nothing raised
    assert freeze.closed_since_thaw == 0
    gc.collect()
    await next_turns()
    assert freeze.freezes == 1 and gc.get_freeze_count() == 0


def test_thaw_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HeapFreeze(0)
