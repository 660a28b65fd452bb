"""The whole demo stack in a subprocess, and the Chromium Playwright drives, for the
browser tests and for ``make screenshots`` (tests/web/screenshots.py).

Kept out of the test modules so that the screenshot script starts exactly the stack
the tests start: what the README shows is what the tests check.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from orderflow.agents.processes import ProcessSpec, ProcessTree, cli_argv
from orderflow.agents.readiness import HttpOk
from orderflow.models.store import open_store
from orderflow.runtime.localserver import free_port
from tests.web.conftest import NO_RATE_LIMIT_ENV

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_WAIT_MS = 30_000  # a guard against hanging, not a latency assertion


class DemoStack:
    """``orderflow demo`` in a subprocess with its own data directory and port.

    Ready when the menu answers; on SIGTERM the demo stops its own children.
    """

    def __init__(self, redis_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.store_url = f"sqlite:///{data_dir / 'orderflow.db'}"
        env = {
            **os.environ,
            "ORDERFLOW_HOST": "127.0.0.1",
            "ORDERFLOW_PORT": str(self.port),
            "ORDERFLOW_REDIS_URL": redis_url,
            "ORDERFLOW_DATA_DIR": str(data_dir),
            "ORDERFLOW_STORE_URL": self.store_url,
            "ORDERFLOW_SIMULATOR_DELAY_MIN": "0.2",
            "ORDERFLOW_SIMULATOR_DELAY_MAX": "0.5",
            "ORDERFLOW_LOG_LEVEL": "WARNING",
            **NO_RATE_LIMIT_ENV,  # the session's shared Redis, one client address
        }
        demo = ProcessSpec(
            "demo",
            cli_argv("demo"),
            env=env,
            log_path=data_dir / "demo.log",
            ready=HttpOk(f"{self.url}/api/v1/menu"),
        )
        self.tree = ProcessTree([demo], grace=20.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.tree.start_ready(timeout)

    def stop(self) -> None:
        self.tree.stop()

    def set_stock(self, item_id: str, stock: int) -> None:
        """Change stock behind the page's back, as another customer's order would."""

        async def change() -> None:
            store = await open_store(self.store_url)
            try:
                await store.set_stock(item_id, stock)
            finally:
                await store.close()

        run_async(change())


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from a test that drives Playwright's sync API.

    Playwright's sync API runs an event loop in this thread, so use another one.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=30)
