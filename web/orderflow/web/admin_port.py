"""The API's admin port: ``/metrics`` (summed over every Sanic worker) and ``/livez``,
served by ``orderflow api``'s main process, away from the public port.

Why the main process: Sanic's workers come and go (restarts, several per pod), and a
scrape must see the sum of all of them, once. Each worker writes its values to the
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``); the main process owns no
requests, so it reads those files for every scrape, from a thread with an event loop
of its own running the runtime's :class:`~orderflow.runtime.admin.AdminServer` (the
same server the workers' admin ports use). Its ``/livez`` says the main process
answers; readiness stays ``/readyz`` on the public port, where the probes of the API
already look (it checks Redis and the store from a worker).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, multiprocess

from orderflow.runtime.admin import AdminServer


@dataclass
class RunningAdmin:
    server: AdminServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def start_admin_port(host: str, port: int) -> RunningAdmin:
    """Listen on ``host:port`` (raises ``OSError`` if taken) and serve from a daemon thread.
    Needs ``PROMETHEUS_MULTIPROC_DIR`` set: the registry reads the workers' files."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server = AdminServer(host, port, None, registry=registry)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(server.start())
    except BaseException:
        loop.close()
        raise
    thread = threading.Thread(target=loop.run_forever, name="orderflow-admin", daemon=True)
    thread.start()
    return RunningAdmin(server, loop, thread)
