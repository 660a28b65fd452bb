"""Running an app as a worker process (what ``orderflow worker MODULE:APP`` calls).

Signals: SIGTERM/SIGINT make the app stop reading, finish and ack in-flight
events, and exit within ``shutdown_timeout``. Redis outages are handled inside
the consumer (reconnect with capped back-off), so the process stays up.
"""

from __future__ import annotations

import asyncio
import importlib
import logging

from orderflow.runtime.app import App
from orderflow.runtime.logs import configure_logging

log = logging.getLogger("orderflow.worker")


def load_app(spec: str) -> App:
    """``"package.module:attribute"`` (attribute defaults to ``app``) -> App."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
    if callable(app) and not isinstance(app, App):
        app = app()
    if not isinstance(app, App):
        raise TypeError(f"{spec} is not an orderflow App (got {type(app).__name__})")
    return app


async def run_worker(app: App, *, metrics_port: int | None = None) -> None:
    """Serve /metrics (when a port is given) and run the app until a signal."""
    port = app.settings.metrics_port if metrics_port is None else metrics_port
    if port:
        from prometheus_client import start_http_server

        start_http_server(port)
        log.info("metrics on :%d/metrics", port)
    await app.run()


def main(spec: str, *, log_format: str | None = None, log_level: str | None = None) -> int:
    app = load_app(spec)
    configure_logging(
        app.name,
        fmt=log_format or app.settings.log_format,
        level=log_level or app.settings.log_level,
    )
    asyncio.run(run_worker(app))
    return 0
