"""Helpers for tests that run ``orderflow worker`` as a real subprocess.

Workers log to a file (a pipe nobody reads would fill up and block them), are
started with ``ORDERFLOW_REDIS_URL`` pointing at the test's server, and are
always reaped: :class:`WorkerPool` kills whatever is still running at teardown.
They are run by ``orderflow.agents.processes``, as the demo's and benchmarks' are.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import redis

from orderflow.agents.processes import Child, ProcessSpec, ProcessTree, cli_argv
from orderflow.agents.readiness import LinePrinted
from orderflow.runtime.envelope import Envelope
from tests.runtime.fault_app import STREAM, Work

REPO = Path(__file__).resolve().parents[2]
ORDERFLOW = Path(sys.executable).with_name("orderflow")
FAULT_APP = "tests.runtime.fault_app:app"


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds.

    The timeout is a generous upper bound for a hang, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def publish_work(client: redis.Redis, works: Iterable[Work], *, batch: int = 1000) -> list[str]:
    """Append orderflow envelopes for ``works`` to the fault stream; entry ids in order."""
    ids: list[str] = []
    pipe = client.pipeline(transaction=False)
    for index, work in enumerate(works, 1):
        pipe.xadd(STREAM, Envelope.new(work, source="test").to_fields())  # type: ignore[arg-type]
        if index % batch == 0:
            ids.extend(entry_id.decode() for entry_id in pipe.execute())
    ids.extend(entry_id.decode() for entry_id in pipe.execute())
    return ids


class WorkerPool:
    """Starts ``orderflow worker`` processes for one test and reaps them at teardown.

    A worker is an ``orderflow.agents.processes.Child``: ``signal(sig)`` reaches
    that process only (a fault test's SIGKILL), ``wait(timeout)`` returns its exit
    code, ``wait_ready(timeout)`` lasts until the App logged that it started (its
    signal handlers are installed), ``output()`` is its log.
    """

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.tree = ProcessTree(grace=10.0)

    def start(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        app: str = FAULT_APP,
        cwd: Path = REPO,
    ) -> Child:
        name = f"worker-{len(self.tree.children)}"
        full_env = {
            **os.environ,
            "ORDERFLOW_REDIS_URL": self.redis_url,
            "ORDERFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        return self.tree.launch(
            ProcessSpec(
                name,
                cli_argv("worker", app, *args),
                env=full_env,
                cwd=cwd,
                log_path=self.log_dir / f"{name}.log",
                ready=LinePrinted(" started: "),
            )
        )

    def close(self) -> None:
        """SIGKILL whatever is still running (a test is over, nothing to drain), then reap."""
        self.tree.kill()
        self.tree.stop()
