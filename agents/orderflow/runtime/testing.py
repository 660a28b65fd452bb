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


async def stream_entries(
    redis: Any,
    stream: str,
    at_least: int = 1,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling bound, as in eventually
) -> list[Any]:
    """Every entry of ``stream`` (``XRANGE``) once it holds at least ``at_least``.

    For a test that reads what was published after an answer it already has: the
    order API answers ``201`` before its events' publish finishes
    (``orderflow.web.after_answer``), so a read right after the answer can come first.
    """
    entries: list[Any] = await eventually(
        lambda: _at_least(redis, stream, at_least),
        timeout=timeout,
        message=f"{stream} did not reach {at_least} entries within {timeout}s",
    )
    return entries


async def _at_least(redis: Any, stream: str, count: int) -> list[Any] | None:
    entries: list[Any] = await redis.xrange(stream)
    return entries if len(entries) >= count else None
