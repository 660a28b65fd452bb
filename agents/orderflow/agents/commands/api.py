"""``orderflow api``: serve the HTTP API (and/or the WebSocket gateway) with Sanic.

Sanic runs a main process that owns the listening socket and N worker
processes that each build the app from a factory (``AppLoader``), so every
worker opens its own Redis pool and store handle.

Metrics across workers: with more than one worker each process would count
on its own, and a scrape would see one worker's share. So, unless the operator
already set ``PROMETHEUS_MULTIPROC_DIR`` (e.g. an ``emptyDir`` in Kubernetes),
this command creates a fresh directory and sets the variable *before* the
workers start and import ``prometheus_client``; ``/metrics`` then sums every
worker's files. The directory is removed when the server stops.

Where ``/metrics`` is: with ``ORDERFLOW_ADMIN_PORT`` set (the Helm chart and compose
set it), on that port only, served by this main process
(:mod:`orderflow.web.admin_port`) — never on the public port, which answers 404
there. Without one (a developer's ``orderflow api``, the demo), on the public port.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from functools import partial

from orderflow.agents.commands.sanic_manager import stop_on_signal_during_startup
from orderflow.agents.settings import Settings, get_settings
from orderflow.runtime import tracing
from orderflow.runtime.logs import configure_logging

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ROLE_CHOICES = ("all", "api", "gateway")

log = logging.getLogger("orderflow.api")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve the REST API, docs, browser UI and WebSocket tracking",
        description=(
            "Serve orderflow over HTTP with Sanic. --role all (default) serves the REST API "
            "(/api/v1, OpenAPI at /docs), the browser UI (/) and WebSocket tracking "
            "(/ws/v1/order-tracking/<id>); --role api leaves out the WebSocket, --role "
            "gateway serves only the WebSocket. Every role serves /healthz and /readyz; "
            "/metrics (summed over the workers) is on ORDERFLOW_ADMIN_PORT when it is set, "
            "else on the public port. Needs ORDERFLOW_REDIS_URL; the store is "
            "ORDERFLOW_STORE_URL."
        ),
    )
    parser.add_argument("--host", default=None, help="bind address (default ORDERFLOW_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default ORDERFLOW_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default ORDERFLOW_HTTP_WORKERS)",
    )
    parser.add_argument(
        "--role", choices=ROLE_CHOICES, default="all", help="what this process serves"
    )
    parser.set_defaults(func=run)


def _configure_logging(settings: Settings, service: str) -> None:
    configure_logging(service, fmt=settings.log_format, level=settings.log_level)


def build_worker_app(settings: Settings, role: str) -> object:
    """The factory each Sanic worker calls (module-level, so it pickles for ``spawn``)."""
    from orderflow.web.app import create_app

    _configure_logging(settings, f"{settings.service}-{role}")
    tracing.configure(f"{settings.service}-{role}", enabled=settings.tracing)
    return create_app(settings, role=role)  # type: ignore[arg-type]


def serve(settings: Settings, *, role: str = "all", workers: int = 1) -> int:
    """Run Sanic in the foreground until SIGINT/SIGTERM; return an exit code."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from orderflow.web.halfclose import HalfCloseProtocol

    # Fresh interpreters per worker: they import prometheus_client after the
    # variable below is set, and share no connection state with this process.
    Sanic.start_method = "spawn"
    stop_on_signal_during_startup()
    own_multiproc_dir: str | None = None
    admin_port = settings.admin_port
    if (workers > 1 or admin_port) and not os.environ.get(MULTIPROC_ENV):
        own_multiproc_dir = tempfile.mkdtemp(prefix="orderflow-metrics-")
        os.environ[MULTIPROC_ENV] = own_multiproc_dir
    admin = None
    if admin_port:
        from orderflow.web.admin_port import start_admin_port

        try:
            admin = start_admin_port(settings.host, admin_port)
        except OSError as exc:
            raise SystemExit(
                f"orderflow api: cannot serve the admin port on {settings.host}:{admin_port}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info("admin port: http://%s:%d/metrics (summed over the workers)", settings.host,
                 admin_port)  # fmt: skip
    loader = AppLoader(factory=partial(build_worker_app, settings, role))  # type: ignore[arg-type]
    try:
        app = loader.load()
        app.prepare(
            host=settings.host,
            port=settings.port,
            workers=workers,
            access_log=False,
            motd=False,
            single_process=False,
            # Sanic's default backlog (100) drops SYNs when a crowd connects at
            # once (the oversell benchmark opens 1000 sockets together).
            backlog=1024,
            # Answers a client that half-closes after its request (orderflow.web.halfclose).
            protocol=HalfCloseProtocol,
        )
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        if admin is not None:
            admin.stop()
        if own_multiproc_dir is not None:
            shutil.rmtree(own_multiproc_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
    return 0


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.workers is not None:
        overrides["http_workers"] = args.workers
    settings = get_settings().model_copy(update=overrides)
    if settings.http_workers < 1:
        raise SystemExit("--workers must be at least 1")
    if not settings.redis_url:
        raise SystemExit("ORDERFLOW_REDIS_URL is not set: the API needs a Redis (or Valkey) server")
    _configure_logging(settings, f"{settings.service}-{args.role}")
    try:  # each Sanic worker sets tracing up itself (build_worker_app): check it can
        tracing.check_available(settings.tracing)
    except (tracing.TracingUnavailable, ValueError) as exc:
        raise SystemExit(f"orderflow api: {exc}") from None
    log.info(
        "serving role=%s on http://%s:%s with %d worker(s)",
        args.role,
        settings.host,
        settings.port,
        settings.http_workers,
    )
    return serve(settings, role=args.role, workers=settings.http_workers)
