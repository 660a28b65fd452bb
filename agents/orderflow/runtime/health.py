"""Is this App able to do its work right now? The checks behind a worker's ``/readyz``.

A worker process can be alive and useless: an agent body that returned (it is never
restarted: "will not run again"), a timer whose task ended, or a Redis it cannot
reach. Kubernetes only learns about it from a probe, so each of these is one named
check here, and the admin server (:mod:`orderflow.runtime.admin`) answers 503 while
any of them fails. The checks are cheap (no scan of streams): task states the App
already holds, the consumer's own count of failed round trips in a row, and one
``PING`` on the App's pool with a short timeout.

Details name *what* is wrong (``cannot reach Redis: ConnectionError``), never where
(no address, URL or password): probes' answers end up in events and dashboards.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderflow.runtime.app import App

PING_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: its name (``redis``, ``agent:<name>``, ``task:<name>``),
    whether it passed, and a one-line reason."""

    name: str
    ok: bool
    detail: str = "ok"


def task_problem(task: asyncio.Task[None]) -> str | None:
    """Why a task that should run for the App's whole life is not running, if so."""
    if not task.done():
        return None
    if task.cancelled():
        return "task was cancelled"
    exc = task.exception()
    return f"task ended: {type(exc).__name__}" if exc is not None else "task ended"


async def redis_check(app: App) -> Check:
    """``PING`` on the App's pool, answered within :data:`PING_TIMEOUT_SECONDS`."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            await app.redis.ping()
    except TimeoutError:
        return Check("redis", False, f"no answer to PING within {PING_TIMEOUT_SECONDS:g}s")
    except Exception as exc:  # any failure to talk to Redis means not ready
        return Check("redis", False, f"cannot reach Redis: {type(exc).__name__}")
    return Check("redis", True)


def agent_checks(app: App) -> list[Check]:
    """Per agent: its tasks (bodies, dispatcher) all running, and its consumer not
    failing round trips (it retries with back-off, but meanwhile it processes nothing)."""
    checks = []
    for agent in app.agents:
        name = f"agent:{agent.name}"
        problem = next(filter(None, map(task_problem, agent.tasks)), None)
        failures = max((consumer.connection_failures for consumer in agent.consumers), default=0)
        if problem is None and failures:
            problem = f"cannot reach Redis ({failures} failed reads in a row)"
        checks.append(Check(name, problem is None, problem or "ok"))
    return checks


async def app_readiness(app: App) -> list[Check]:
    """Every check for ``app``; ready when all pass. Before the App has started (its
    worker may still be waiting for Redis) and once it stops, one failing ``app`` check."""
    if not app.started:
        return [Check("app", False, "not running (starting or stopped)")]
    if app.stopping:
        return [Check("app", False, "stopping")]
    checks = [Check("app", True), await redis_check(app), *agent_checks(app)]
    for task in app.background_tasks:
        problem = task_problem(task)
        checks.append(Check(f"task:{task.get_name()}", problem is None, problem or "ok"))
    return checks
