"""``BackgroundTasks``: the tasks an App runs besides its agents, and their end.

An App runs its timers, the delayed-event scheduler and the lag/pending metrics
poller as tasks of their own, which must be kept somewhere: the readiness checks
look at them (a task that ended is a failing check), and at stop, once the agents
are done, each gets what is left of the shutdown timeout to see the stopping event
and return, is cancelled after that, and is awaited before the shutdown hooks run.
What a task raised is retrieved there and logged with its traceback (a timer logs its
own errors as they happen; the scheduler or the metrics poller would otherwise end
silently, seen only as a failing readiness check while the App ran).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("orderflow.app")


class BackgroundTasks:
    """The running background tasks of one App, named ``<prefix>:<name>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """Every task spawned since the last :meth:`stop`."""
        return tuple(self._tasks)

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run ``coro`` as a task named ``<prefix>:<name>``."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.prefix}:{name}")
        self._tasks.append(task)

    async def stop(self, deadline: float) -> None:
        """Wait for the tasks to return until ``deadline`` (event-loop time; at least
        0.1 s), cancel those still running, await them all, and forget them."""
        if self._tasks:
            loop = asyncio.get_running_loop()
            _, pending = await asyncio.wait(self._tasks, timeout=max(0.1, deadline - loop.time()))
            for task in pending:
                task.cancel()
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            for task, result in zip(self._tasks, results, strict=True):
                if isinstance(result, Exception):
                    log.error("background task %s failed", task.get_name(), exc_info=result)
        self._tasks = []
