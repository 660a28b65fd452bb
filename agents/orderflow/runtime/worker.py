"""Running Apps as a worker process: load them, wait for Redis, say what they run.

These are the pieces ``orderflow worker MODULE:APP [MODULE:APP ...]``
(:mod:`orderflow.runtime.commands.worker`) puts around :meth:`App.run`; they live apart
from the command's options and exit codes so that a program embedding the runtime can
start its workers the same way.

Several Apps in one process (as Faust runs many agents in one worker): on a small
machine every Python process costs a core's worth of wake-ups and a hop between
processes; one process with one event loop runs them all. Each App keeps its name,
its consumer groups and its hooks, so the groups are exactly those of one worker per
App and both layouts can read the same streams at once (they are then two consumers
of each group, as two replicas are). :func:`run_apps` starts them in order, stops
them together on one signal; :func:`apps_readiness` is one ``/readyz`` for all.

Why wait before ``run()``: a worker started before its Redis (compose bringing
everything up at once, a pod whose Redis is being rescheduled) would otherwise log
"started" and then a reconnect error every few seconds from every consumer. Waiting
first, with back-off, gives one clear line per attempt ("waiting for Redis at ... (why)")
and a start banner only once the worker really runs. Once running, a lost connection
is the consumer's business (it reconnects with capped back-off and nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import Sequence

from redis.exceptions import AuthenticationError, AuthorizationError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow.runtime.app import App
from orderflow.runtime.connection import connect_redis, error_reason, redact_url
from orderflow.runtime.health import Check, app_readiness

log = logging.getLogger("orderflow.worker")

FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0
STARTED_POLL_SECONDS = 0.05


class AppLoadError(LookupError):
    """``MODULE:APP`` names no App: the attribute is missing or is something else.
    (An error raised while the module itself is imported propagates as it is.)"""


def load_app(spec: str) -> App:
    """``"package.module:attribute"`` (attribute defaults to ``app``) -> App.

    A callable attribute that is not an App is called (an app factory)."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, attribute or "app")
    except AttributeError:
        missing = attribute or "app"
        raise AppLoadError(f"module {module_name} has no attribute {missing!r}") from None
    if callable(app) and not isinstance(app, App):
        app = app()
    if not isinstance(app, App):
        raise AppLoadError(f"{spec} is not an orderflow App (got {type(app).__name__})")
    return app


async def wait_for_redis(
    url: str,
    stop: asyncio.Event,
    *,
    first_delay: float = FIRST_RETRY_SECONDS,
    longest_delay: float = LONGEST_RETRY_SECONDS,
) -> bool:
    """PING ``url`` until it answers (``True``) or ``stop`` is set (``False``).

    Each failed attempt logs "waiting for Redis at <url> (<reason>)" (password masked);
    the pause doubles from ``first_delay`` up to ``longest_delay``, so a long outage
    costs a line every few seconds, not a flood. Refused credentials are not waited
    out: the error is raised (a wrong password does not fix itself)."""
    delay = first_delay
    while not stop.is_set():
        client = connect_redis(url)
        try:
            await client.ping()
            return True
        except (AuthenticationError, AuthorizationError):
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException) as exc:
            log.warning("waiting for Redis at %s (%s)", redact_url(url), error_reason(exc))
        finally:
            await client.aclose()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, longest_delay)
    return False


def banner_lines(app: App, url: str, admin_url: str | None = None) -> list[str]:
    """What the worker runs, for the start banner: where, as whom, and per agent its
    stream -> group with its concurrency (so an operator can match it to ``orderflow
    streams``), then the timers."""
    admin = f"admin {admin_url} (/metrics /livez /readyz)" if admin_url else "no admin port"
    lines = [
        f"worker {app.name} running: redis {redact_url(url)}, consumer {app.consumer_name}, {admin}"
    ]
    for agent in app.agents:
        topic = agent.topic
        partitions = f", {topic.partitions} partitions" if topic.partitions > 1 else ""
        lines.append(
            f"  agent {agent.name}: {topic.name} -> {agent.group} "
            f"(concurrency {agent.concurrency}{partitions})"
        )
    lines.extend(f"  timer {timer.name}: every {timer.interval:g}s" for timer in app.timers)
    return lines


async def announce_when_started(
    apps: Sequence[App], running: asyncio.Future[None], lines: list[str]
) -> None:
    """Log ``lines`` once every one of ``apps`` has started (every agent and timer
    running), unless ``running`` (their ``run``) ends first.

    ``App`` has no "started" hook; its ``started`` flag is set at the very end of
    ``start()``, so it is polled while the apps start (a fraction of a second)."""
    while not all_started(apps) and not running.done():
        await asyncio.wait({running}, timeout=STARTED_POLL_SECONDS)
    if all_started(apps):
        for line in lines:
            log.info(line)


def worker_name(apps: Sequence[App]) -> str:
    """The process's name: the App's, or ``orders+delivery+...``; what its log lines and
    spans say outside any App (inside one they name it: ``runtime.context.current_service``)."""
    return "+".join(app.name for app in apps)


async def apps_readiness(apps: Sequence[App]) -> list[Check]:
    """The checks of every App; with several, each name is prefixed ``<app>/`` (two
    Apps both have a ``redis`` check), so ``/readyz`` names the App that fails."""
    if len(apps) == 1:
        return await app_readiness(apps[0])
    checks: list[Check] = []
    for app in apps:
        for check in await app_readiness(app):
            checks.append(Check(f"{app.name}/{check.name}", check.ok, check.detail))
    return checks


async def run_apps(apps: Sequence[App], stop: asyncio.Event) -> None:
    """Run ``apps`` in this loop until ``stop`` is set, then stop them together.

    One App: :meth:`App.run` (its own signal handlers). Several: each is started in
    order (one failing to start stops those already started, then raises), and on
    ``stop`` all stop at once, so the shutdown timeouts overlap as those of separate
    processes would. The caller owns the signal handlers that set ``stop``."""
    if len(apps) == 1:
        await apps[0].run()
        return
    started: list[App] = []
    try:
        for app in apps:
            started.append(app)
            await app.start()
        await stop.wait()
        log.info("worker %s: stop requested", worker_name(apps))
    finally:
        await asyncio.gather(*(app.stop() for app in reversed(started)))


def all_started(apps: Sequence[App]) -> bool:
    return all(app.started for app in apps)


def freeze_startup_heap() -> int:
    """Move every object start-up left alive out of CPython's full garbage collections;
    return how many were moved (``gc.get_freeze_count()``).

    Why: a full (oldest generation) collection walks every container object of the
    process while its event loop stands still, and most of a worker's objects are made
    at start-up and live as long as it (imported modules, classes, pydantic models,
    settings, clients): tens of thousands of objects walked again and again for
    nothing, a pause of tens of milliseconds in the middle of some event's handling
    (seen as 80-300 ms on a loaded machine: docs/benchmarks.md). Frozen objects are
    still freed by reference counting; only cycles among them are never collected, and
    start-up's objects are not garbage. One collection first, so start-up's own garbage
    is freed rather than frozen. Once only: what the worker makes later (events, tasks)
    stays in the collector's care, so nothing it leaves in cycles is held back.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
