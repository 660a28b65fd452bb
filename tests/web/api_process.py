"""Start real ``orderflow api`` processes for the web tests.

Each process is a separate OS process on its own free port, talking to the
test Redis and a SQLite file shared with the test, exactly as replicas of the
API or the WebSocket gateway share Redis and the store in production. They are
run by ``orderflow.agents.processes``, as the demo's and the benchmarks' are.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from orderflow.agents.processes import Child, ProcessSpec, ProcessTree, cli_argv
from orderflow.agents.readiness import HttpOk
from orderflow.runtime.localserver import free_port

REPO = Path(__file__).resolve().parents[2]


class ApiProcess:
    """One ``orderflow api ARGS`` process; ``url``/``ws_url`` point at it once started."""

    def __init__(
        self,
        *,
        redis_url: str,
        store_url: str,
        log_path: Path,
        args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        env = {
            **os.environ,
            "ORDERFLOW_HOST": "127.0.0.1",
            "ORDERFLOW_PORT": str(self.port),
            "ORDERFLOW_REDIS_URL": redis_url,
            "ORDERFLOW_STORE_URL": store_url,
            "ORDERFLOW_HTTP_WORKERS": "1",
            "ORDERFLOW_LOG_LEVEL": os.environ.get("ORDERFLOW_TEST_LOG_LEVEL", "WARNING"),
            # Many orders from 127.0.0.1 into the suite's shared Redis (see make_settings).
            "ORDERFLOW_ORDER_RATE_LIMIT_PER_MINUTE": "0",
            **(extra_env or {}),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # `orderflow api` makes its own
        spec = ProcessSpec(
            "api",
            cli_argv("api", *args),
            env=env,
            cwd=REPO,
            log_path=log_path,
            ready=HttpOk(f"{self.url}/healthz"),
        )
        # SIGTERM, then SIGKILL to the group (Sanic's workers too) after 5 s.
        self.tree = ProcessTree([spec], grace=5.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def child(self) -> Child:
        return self.tree["api"]

    def start(self, timeout: float = 60.0) -> ApiProcess:
        """Start it and wait until ``/healthz`` answers; stopped again if it does not."""
        self.tree.start_ready(timeout)
        return self

    def stop(self) -> None:
        self.tree.stop()

    def __enter__(self) -> ApiProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.child.output()


def sqlite_url(directory: Path) -> str:
    """A SQLite store file in ``directory``, shared by a test and its processes."""
    return f"sqlite:///{directory / 'orderflow.db'}"


@contextlib.contextmanager
def running_process(
    redis_url: str, store_url: str, log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[ApiProcess]:
    """One started ``orderflow api`` (all roles), stopped when the block ends."""
    process = ApiProcess(
        redis_url=redis_url, store_url=store_url, log_path=log_path, extra_env=env
    ).start()
    try:
        yield process
    finally:
        process.stop()


async def metric_value(client: httpx.AsyncClient, name: str) -> float:
    """The value of the unlabelled metric ``name`` on ``client``'s ``/metrics``."""
    text = (await client.get("/metrics")).text
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert match is not None, text
    return float(match[1])
