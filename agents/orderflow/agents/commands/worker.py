"""``orderflow worker MODULE:APP``: run the agents and timers of one App in this process.

The unit of deployment is one worker process per service (scaled by running
more of them: they share the consumer group, Redis spreads the entries). The
command imports the App, sets up JSON logging, optionally serves Prometheus
metrics, and runs until SIGTERM/SIGINT, when the App stops reading, finishes and
acks what it holds and exits 0 within its shutdown timeout. The runtime's own
loading/serving pieces live in :mod:`orderflow.runtime.worker`; this module adds
the command-line surface (options, exit codes, the current directory on
``sys.path`` so ``orderflow worker myservice:app`` works like ``uvicorn``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from orderflow.agents.commands.redis_option import ENV_NAME, add_redis_url_option
from orderflow.runtime.app import App
from orderflow.runtime.logs import configure_logging
from orderflow.runtime.worker import load_app

log = logging.getLogger("orderflow.worker")

EXIT_BAD_APP = 2
EXIT_CRASHED = 1
EXIT_INTERRUPTED = 130


def serve_metrics(port: int, host: str) -> None:
    """Prometheus /metrics on ``host:port`` (a daemon thread; the default registry)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)


def prepare_app(args: argparse.Namespace) -> App:
    """Import the App named by ``args.app`` and apply the command-line overrides."""
    if args.redis_url:
        # Before the import: modules that read settings at import time see it too.
        os.environ[ENV_NAME] = args.redis_url
        from orderflow.agents.settings import get_settings
        from orderflow.runtime.settings import get_runtime_settings

        get_settings.cache_clear()
        get_runtime_settings.cache_clear()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    if args.redis_url:
        app.broker = args.redis_url
    if args.concurrency is not None:
        for agent in app.agents:
            agent.concurrency = args.concurrency
    return app


async def run_app(app: App, *, metrics_port: int, metrics_host: str) -> None:
    if metrics_port > 0:
        serve_metrics(metrics_port, metrics_host)
    await app.run()


def run(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        print("error: --concurrency must be >= 1", file=sys.stderr)
        return EXIT_BAD_APP
    try:
        app = prepare_app(args)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"error: cannot load {args.app}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_APP
    try:
        app.url  # noqa: B018 - raises when neither the App nor the environment names a server
    except RuntimeError as exc:
        print(f"error: {exc} (or pass --redis-url)", file=sys.stderr)
        return EXIT_BAD_APP
    configure_logging(
        app.name,
        fmt=args.log_format or app.settings.log_format,
        level=args.log_level or app.settings.log_level,
    )
    port = args.metrics_port if args.metrics_port is not None else app.settings.metrics_port
    try:
        asyncio.run(run_app(app, metrics_port=port, metrics_host=args.metrics_host))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("worker for %s crashed", args.app)
        return EXIT_CRASHED
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the agents and timers of an App until SIGTERM",
        description=(
            "Import MODULE:APP (an orderflow App; APP defaults to 'app'; the current "
            "directory is importable) and run its agents and timers. Logs are JSON lines "
            "on stderr. On SIGTERM or SIGINT the worker stops reading, finishes and acks "
            "the events it holds and exits 0 within the App's shutdown timeout "
            "(ORDERFLOW_SHUTDOWN_TIMEOUT_SECONDS). Run several workers to scale out: they "
            "share each consumer group, and one takes over the pending entries of a "
            "worker that died."
        ),
        epilog="example: orderflow worker orderflow.agents.orders:app --metrics-port 9100",
    )
    parser.add_argument("app", metavar="MODULE:APP", help="e.g. orderflow.agents.orders:app")
    add_redis_url_option(parser)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus /metrics on this port; 0 = off (default: $ORDERFLOW_METRICS_PORT)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the metrics server binds (default 0.0.0.0, so Prometheus can scrape)",
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
