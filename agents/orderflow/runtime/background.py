"""``BackgroundTasks``: the tasks an App runs besides its agents, and their end.

An App runs its timers, the delayed-event scheduler and the lag/pending metrics
poller as tasks of their own, which must be kept somewhere: the readiness checks
look at them (a task that ended is a failing check), and at stop, once the agents
are done, each gets what is left of the shutdown timeout to see the stopping event
and return, is cancelled after that, and is awaited before the shutdown hooks run.
Awaiting them with ``return_exceptions=True`` retrieves what a task raised (a timer
logs its own errors), so asyncio does not report it as never retrieved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


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
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
