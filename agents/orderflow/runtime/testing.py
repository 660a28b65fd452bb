"""Test harness: run an app's agents against a real server and wait for outcomes.

No mocks: tests point ``App(broker=redis_url)`` at the private server from the
pytest plugin, then::

    async with run_app(app):
        await topic.send(value=...)
        await eventually(lambda: len(seen) == 1)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from orderflow.runtime.app import App


@asynccontextmanager
async def run_app(app: App) -> AsyncIterator[App]:
    """Start the app's agents, timers and scheduler; stop them (gracefully) on exit."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def eventually(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float = 10.0,  # noqa: ASYNC109 - the contract's name; a polling bound
    interval: float = 0.02,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; returns its value or raises
    AssertionError after ``timeout`` seconds (a generous bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
