"""Helpers for tests that run ``orderflow worker`` as a real subprocess.

Workers log to a file (a pipe nobody reads would fill up and block them), are
started with ``ORDERFLOW_REDIS_URL`` pointing at the test's server, and are
always reaped: :class:`WorkerPool` kills whatever is still running at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import redis

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


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still running after {timeout:.0f}s; log:\n{self.log()[-3000:]}"
            ) from None

    def wait_started(self, timeout: float = 60) -> None:
        """Until the App logged that it started (its signal handlers are installed)."""
        wait_until(
            lambda: " started: " in self.log() or not self.alive(),
            timeout=timeout,
            what=f"worker {self.pid} to start",
        )
        assert self.alive(), f"worker {self.pid} exited at start; log:\n{self.log()[-3000:]}"

    def alive(self) -> bool:
        return self.process.poll() is None


class WorkerPool:
    """Starts workers for one test and reaps them (SIGKILL) at teardown."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, app: str = FAULT_APP
    ) -> Worker:
        log_path = self.log_dir / f"worker-{len(self.workers)}.log"
        full_env = {
            **os.environ,
            "ORDERFLOW_REDIS_URL": self.redis_url,
            "ORDERFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [str(ORDERFLOW), "worker", app, *args],
                cwd=REPO,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log_path)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.process.wait(10)
