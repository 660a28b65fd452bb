"""Work a request leaves to run after its answer: the publish of a placed order's outbox.

Why: a placed order's ``201`` used to wait for its two events' publish round trip to
Redis (about 1.3 ms at p50 on the idle 2-core VM, a third of the POST's server time),
although nothing the client is told depends on it: the order is committed with its
outbox rows, and whatever happens to the publish (Redis away, the process killed) the
outbox relay publishes the rows later. So the handler answers at once and the publish,
started before the answer is written, goes on in a task of this registry. The events
go out as soon as before; the client hears of its order 1.3 ms sooner, and opens its
tracking socket that much earlier.

The registry keeps a reference to each task until it is done (the event loop keeps only
weak ones), logs one that failed (the publish itself never raises: it logs and leaves
the rows to the relay), and at server stop :meth:`drain` waits for those in flight
before the publisher and the store are closed, so that a stop does not turn every
order of its last moment into one the relay must find.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("orderflow.web")


class AfterAnswer:
    """The running after-answer tasks of one API process."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own (in the caller's context: its correlation
        id and deadline), kept until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("after-answer task failed", exc_info=task.exception())

    async def drain(self, within: float) -> None:
        """Wait up to ``within`` seconds for the tasks in flight; cancel the rest (their
        rows stay unpublished for the relay)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d after-answer publish(es) cancelled at stop; the relay has them",
                        len(pending))  # fmt: skip
            await asyncio.wait(pending)
