"""``app.timer(seconds)``: a coroutine called periodically while the app runs.

A timer runs in every worker process of the app (it is not a cluster-wide
singleton): use it for per-process work such as relaying or housekeeping that is
safe to run concurrently. An exception is logged and reported to the app's
``on_error`` hooks; the timer goes on at its next tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("orderflow.timer")

TimerFun = Callable[[], Awaitable[Any]]
ErrorReporter = Callable[[BaseException], Awaitable[None]]


class Timer:
    def __init__(self, fun: TimerFun, interval: float, name: str, run_at_start: bool) -> None:
        if interval <= 0:
            raise ValueError("timer interval must be > 0")
        self.fun = fun
        self.interval = interval
        self.name = name
        self.run_at_start = run_at_start

    async def run(self, stopping: asyncio.Event, report: ErrorReporter) -> None:
        """Tick until ``stopping`` is set; the wait between ticks ends early on stop."""
        first = True
        while not stopping.is_set():
            if not (first and self.run_at_start):
                try:
                    await asyncio.wait_for(stopping.wait(), self.interval)
                    return
                except TimeoutError:
                    pass
            first = False
            try:
                await self.fun()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("timer %s failed", self.name)
                await report(exc)
