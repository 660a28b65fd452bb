"""Keep a server process's long-lived objects out of CPython's full garbage collections.

Why (traced and measured in docs/benchmarks.md, "Fan-out: the never-reader delay was a
full garbage collection"): a full (generation 2) collection walks every container
object of the process while the event loop stands still. A gateway process holds
about 76,000-81,000 of them after start-up and about 180 more per open tracking
WebSocket (its tasks, futures, contexts, locks, protocol objects), so with 1,050
sockets one full collection stopped the loop for 200-490 ms on the loaded test
machine (the 184 ms of the idle runs, presumably), and every socket of every order
waited for it. CPython starts one whenever the objects that survived
two younger collections since the last full one reach a quarter of those alive after
it: clients connecting (the benchmark's 50 never-reading sockets opened on top of
1,000 readers, or any reconnect wave) are exactly that, so the pause landed in the
middle of a fan-out.

What :class:`HeapFreeze` does: right after start-up, and again after every full
collection, :func:`gc.freeze` moves every object alive into CPython's permanent
generation, which collections skip; the next full collection walks only what
survived since the last one, not the whole heap (measured, loaded: 50-97 ms instead
of 208-487 ms while 1,000 sockets connected and their orders moved). Frozen objects
are still freed by reference counting the moment nothing refers to them; what a
freeze holds back is garbage in *cycles*, and a closed connection leaves some (its
protocol, transport, tasks and frames refer to each other). So after
``thaw_after_closed`` connections have closed since the last thaw, :func:`gc.unfreeze`
hands everything back: the next full collection walks the whole heap once (the pause
every full collection had before) and frees those cycles, and the freezing starts
again. At most ``thaw_after_closed`` closed connections' cycles (about 37 KiB each,
the whole connection) wait for that walk.

One process, one collector: the instance installed by :meth:`HeapFreeze.install` is
the one :func:`connection_closed` (called by the server protocol,
:mod:`orderflow.web.halfclose`) counts for.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

log = logging.getLogger(__name__)

FULL_COLLECTION = 2  # CPython's oldest generation: a collection of it walks everything

_installed: HeapFreeze | None = None


class HeapFreeze:
    """Freeze after start-up and after each full collection; thaw per closed connections."""

    def __init__(self, thaw_after_closed: int) -> None:
        if thaw_after_closed < 1:
            raise ValueError("thaw_after_closed must be at least 1")
        self.thaw_after_closed = thaw_after_closed
        self.closed_since_thaw = 0
        self.freezes = 0  # how many times the heap was frozen (start-up included)
        self.thaws = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Collect once, freeze what start-up built, and follow the full collections.

        Called on the process's event loop (a server-start listener); one instance
        per process: installing a second one replaces the first.
        """
        global _installed
        if _installed is not None:
            _installed.uninstall()
        self._loop = asyncio.get_running_loop()
        gc.collect()  # what start-up left as garbage is not frozen with the rest
        self._freeze()
        gc.callbacks.append(self._after_collection)
        _installed = self

    def uninstall(self) -> None:
        """Stop following collections and hand every frozen object back to the collector."""
        global _installed
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()
        self._loop = None
        if _installed is self:
            _installed = None

    def connection_closed(self) -> None:
        """One connection ended; after ``thaw_after_closed`` of them, thaw (see the module)."""
        self.closed_since_thaw += 1
        if self.closed_since_thaw >= self.thaw_after_closed:
            self.closed_since_thaw = 0
            self.thaws += 1
            gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        """gc callback: a full collection just ended; freeze its survivors soon.

        Not here: a callback runs inside the collector, in whichever thread allocated
        (the store's driver threads too); the loop's thread freezes on its next turn.
        """
        loop = self._loop
        if phase != "stop" or info.get("generation") != FULL_COLLECTION or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to keep fast
            loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        if self._loop is None:
            return  # uninstalled since the collection that scheduled this
        gc.freeze()
        self.freezes += 1
        log.debug("heap frozen (%d objects in the permanent generation)", gc.get_freeze_count())


def connection_closed() -> None:
    """Count a closed connection for this process's :class:`HeapFreeze`, if one is installed."""
    if _installed is not None:
        _installed.connection_closed()


def installed() -> HeapFreeze | None:
    """This process's :class:`HeapFreeze`, or ``None``."""
    return _installed
