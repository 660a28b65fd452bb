"""``orderflow worker MODULE:APP [MODULE:APP ...]``: run the agents and timers of Apps here.

The unit of deployment is one worker process per service (scaled by running
more of them: they share the consumer group, Redis spreads the entries); several
Apps named at once run in this one process and event loop, behind one admin port
(on a small machine fewer processes means fewer wake-ups and hops; each App keeps
its consumer groups: :mod:`orderflow.runtime.worker`). The command imports the Apps,
sets up logging (and tracing, with ``ORDERFLOW_TRACING=true``:
:mod:`orderflow.runtime.tracing`, service name = the App's name, ``a+b`` for several), optionally
serves its admin port (``/metrics``, ``/livez``, ``/readyz``:
:mod:`orderflow.runtime.admin`), waits until its Redis answers (saying so, with back-off),
logs a start banner, and
runs until SIGTERM/SIGINT, when the App stops reading, finishes and acks what it
holds and exits 0 within its shutdown timeout. The loading, waiting and banner live
in :mod:`orderflow.runtime.worker`; this module is the command-line surface (options,
one-line errors, exit codes, the current directory on ``sys.path`` so ``orderflow
worker myservice:app`` works like ``uvicorn``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from functools import partial

from redis.exceptions import AuthenticationError, AuthorizationError, RedisError

from orderflow.runtime import tracing
from orderflow.runtime.admin import AdminServer
from orderflow.runtime.app import App
from orderflow.runtime.commands.base import (
    ENV_NAME,
    EXIT_FAILED,
    EXIT_USAGE,
    CommandError,
    Subparsers,
    add_redis_url_option,
    check_redis_url,
    describe_exception,
    describe_redis_error,
)
from orderflow.runtime.logs import configure_logging
from orderflow.runtime.settings import get_runtime_settings
from orderflow.runtime.worker import (
    AppLoadError,
    all_started,
    announce_when_started,
    apps_readiness,
    banner_lines,
    freeze_startup_heap,
    load_app,
    run_apps,
    wait_for_redis,
    worker_name,
)

log = logging.getLogger("orderflow.worker")

EXIT_INTERRUPTED = 130


async def start_admin(apps: list[App], port: int, host: str) -> AdminServer:
    """The admin server of ``apps`` on ``host:port``, listening (before Redis is waited
    for, so ``/livez`` answers and ``/readyz`` says "starting" meanwhile)."""
    server = AdminServer(host, port, partial(apps_readiness, apps))
    try:
        await server.start()
    except OSError as exc:
        raise CommandError(f"cannot serve the admin port on {host}:{port}: "
                           f"{exc.strerror or exc}") from exc  # fmt: skip
    return server


def load_error(spec: str, exc: Exception) -> str:
    """Why ``spec`` did not load, in one line: a missing module as such (not where
    importlib noticed), an error raised by the module's own code with its file and line."""
    module = spec.partition(":")[0]
    if isinstance(exc, AppLoadError | ValueError):  # ValueError: an empty module name
        return f"cannot load {spec}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and f"{module}.".startswith(f"{exc.name}."):
        return (
            f"cannot load {spec}: no module named {exc.name!r} "
            "(the current directory and PYTHONPATH are searched)"
        )
    return f"cannot load {spec}: {describe_exception(exc)}"


def prepare_apps(args: argparse.Namespace) -> list[App]:
    """Import the Apps named by ``args.apps`` and apply the command-line overrides."""
    if args.redis_url:
        # Before the import: modules that read settings at import time see it too.
        os.environ[ENV_NAME] = args.redis_url
        get_runtime_settings.cache_clear()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    apps: list[App] = []
    for spec in args.apps:
        try:
            app = load_app(spec)
        except Exception as exc:  # the module may raise anything while it is imported
            raise CommandError(load_error(spec, exc), EXIT_USAGE) from None
        if any(app is seen for seen in apps):
            raise CommandError(f"{spec} names an App already given", EXIT_USAGE)
        apps.append(app)
    for app in apps:
        if args.redis_url:
            app.broker = args.redis_url
        if args.concurrency is not None:
            for agent in app.agents:
                agent.concurrency = args.concurrency
    return apps


def app_url(app: App) -> str:
    try:
        url = app.url
    except RuntimeError as exc:  # neither the App nor the environment names a server
        raise CommandError(f"{exc} (or pass --redis-url)", EXIT_USAGE) from None
    return check_redis_url(url)


async def serve(apps: list[App], admin_port: int, admin_host: str) -> int:
    """Serve the admin port, wait for Redis, run the Apps with a start banner; 0 after a
    signal.

    SIGTERM/SIGINT are ours while waiting and until a lone ``app.run()`` installs its own;
    ours call ``app.request_stop()`` too, which ``run()`` honours if it comes in between."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stop_requested() -> None:
        stop.set()
        for app in apps:
            app.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested)
    admin = await start_admin(apps, admin_port, admin_host) if admin_port > 0 else None
    try:
        return await run_worker(apps, stop, admin.url if admin else None)
    finally:
        if admin is not None:
            await admin.close()


async def run_worker(apps: list[App], stop: asyncio.Event, admin_url: str | None) -> int:
    urls = list(dict.fromkeys(app_url(app) for app in apps))  # each server once, in order
    for url in urls:
        try:
            if not await wait_for_redis(url, stop):
                log.info("worker %s: stopped while waiting for Redis", worker_name(apps))
                return 0
        except (AuthenticationError, AuthorizationError) as exc:
            raise CommandError(describe_redis_error(url, exc), EXIT_USAGE) from exc
    running = asyncio.ensure_future(run_apps(apps, stop))
    lines = [line for app in apps for line in banner_lines(app, app_url(app), admin_url)]
    await announce_when_started(apps, running, lines)
    if all_started(apps) and apps[0].settings.gc_freeze_at_start:
        frozen = freeze_startup_heap()
        log.info("worker %s: %d start-up objects frozen out of full garbage collections",
                 worker_name(apps), frozen)  # fmt: skip
    try:
        await running
    except (RedisError, OSError) as exc:  # a server went away while the Apps started
        raise CommandError(describe_redis_error(urls[0], exc)) from exc
    return 0


def run(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise CommandError("--concurrency must be >= 1", EXIT_USAGE)
    apps = prepare_apps(args)
    for app in apps:
        app_url(app)  # a missing or malformed URL is a usage error before anything starts
    app, name = apps[0], worker_name(apps)
    level = args.log_level or app.settings.log_level
    try:
        configure_logging(name, fmt=args.log_format or app.settings.log_format, level=level)
    except ValueError as exc:  # logging's "Unknown level: 'LOUD'"
        raise CommandError(f"invalid log level: {exc}", EXIT_USAGE) from None
    try:
        tracing.configure(name, enabled=app.settings.tracing)
    except (tracing.TracingUnavailable, ValueError) as exc:  # e.g. OTEL_TRACES_EXPORTER=zipkin
        raise CommandError(str(exc), EXIT_USAGE) from None
    port = args.admin_port if args.admin_port is not None else app.settings.admin_port
    try:
        return asyncio.run(serve(apps, port, args.admin_host))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_INTERRUPTED
    except CommandError:
        raise
    except Exception as exc:  # the App's own code failed (a startup hook, a bug)
        log.error("worker for %s crashed: %s", " ".join(args.apps), describe_exception(exc),
                  exc_info=exc)  # fmt: skip
        return EXIT_FAILED


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the agents and timers of one or more Apps until SIGTERM",
        description=(
            "Import MODULE:APP (an orderflow App; APP defaults to 'app'; the current "
            "directory is importable) and run its agents and timers. Name several Apps "
            "to run them all in this one process and event loop, behind one admin port "
            "whose /readyz covers every App (check names prefixed '<app>/'); each keeps "
            "its own consumer groups, so this and one worker per App can run side by side. "
            "Until its Redis "
            "answers the worker logs 'waiting for Redis at URL (reason)' with back-off; "
            "then a start banner: the Redis URL (password masked), the consumer name, the "
            "admin URL and each agent's stream -> group with its concurrency. Logs are "
            "JSON lines on stderr. On SIGTERM or SIGINT the worker stops reading, finishes "
            "and acks the events it holds and exits 0 within the App's shutdown timeout "
            "(ORDERFLOW_SHUTDOWN_TIMEOUT_SECONDS). With an admin port it serves GET /metrics "
            "(Prometheus), /livez (200 while the event loop answers) and /readyz (200 when "
            "every agent and timer runs and Redis answers, else 503 naming the failing "
            "check). Run several workers to scale out: they "
            "share each consumer group, and one takes over the pending entries of a "
            "worker that died. Exit codes: 0 stopped by a signal, 1 crashed, 2 the app, "
            "URL or credentials are wrong."
        ),
        epilog=(
            "examples: orderflow worker orderflow.agents.orders:app --admin-port 9100;"
            " orderflow worker orderflow.agents.orders:app orderflow.agents.delivery:app"
        ),
    )
    parser.add_argument(
        "apps",
        nargs="+",
        metavar="MODULE:APP",
        help="e.g. orderflow.agents.orders:app; several run in one process",
    )
    add_redis_url_option(parser)
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        metavar="N",
        help="serve /metrics, /livez and /readyz on this port; 0 = off "
        "(default: $ORDERFLOW_ADMIN_PORT)",
    )
    parser.add_argument(
        "--admin-host",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the admin port binds (default 0.0.0.0, so probes and Prometheus reach it)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="override every agent's concurrency (copies of its body per process)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=None,
        help="log line format (default: $ORDERFLOW_LOG_FORMAT, json)",
    )
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, ... (default: $ORDERFLOW_LOG_LEVEL)"
    )
    parser.set_defaults(func=run)
