"""``orderflow worker`` before and at its start: "waiting for Redis", the banner, credentials.

Real processes against real servers: a worker started where nothing listens says it
is waiting (with back-off) and not that it started; once a server comes up on that
port it logs its banner; SIGTERM, while waiting or running, ends it with exit 0.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orderflow.agents.processes import Child
from orderflow.runtime.localserver import LocalRedisServer, free_port
from tests.runtime.worker_process import WorkerPool, wait_until


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool("", tmp_path)  # each test passes its own --redis-url
    try:
        yield workers
    finally:
        workers.close()


def log_lines(worker: Child) -> list[dict[str, Any]]:
    return [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]


def messages(worker: Child, containing: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(worker) if containing in line["message"]]


def test_worker_waits_for_redis_with_back_off_then_starts_and_stops_on_sigterm(pool):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    worker = pool.start("--redis-url", url, "--concurrency", "3")
    waiting = f"waiting for Redis at {url} ("
    wait_until(
        lambda: len(messages(worker, waiting)) >= 3 or not worker.alive(),
        timeout=60,
        what="three 'waiting for Redis' lines",
    )
    assert worker.alive(), worker.output()
    lines = messages(worker, waiting)
    assert all(line["level"] == "WARNING" for line in lines)
    assert "Connection refused" in lines[0]["message"]
    assert not messages(worker, "started") and not messages(worker, "running")
    # Back-off: the pauses double from 0.5 s (lower bounds only: a busy machine is slower).
    times = [datetime.fromisoformat(line["time"]) for line in lines[:3]]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.9, gaps

    with LocalRedisServer(port=port):
        wait_until(
            lambda: bool(messages(worker, "worker fault running")) or not worker.alive(),
            timeout=60,
            what="the start banner",
        )
        banner = [line["message"] for line in log_lines(worker)]
        head = next(text for text in banner if "worker fault running" in text)
        assert f"redis {url}" in head and "consumer " in head and "no admin port" in head
        assert any(
            text.strip()
            == "agent tests.runtime.fault_app.work: fault-stream -> fault-group (concurrency 3)"
            for text in banner
        ), banner
        # Once started, start-up's objects leave the full collections (gc.freeze).
        wait_until(
            lambda: bool(messages(worker, "frozen out of full")) or not worker.alive(),
            timeout=60,
            what="the heap freeze line",
        )
        [frozen] = messages(worker, "start-up objects frozen out of full garbage collections")
        assert int(frozen["message"].split(": ", 1)[1].split()[0]) > 1000, frozen
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0


def test_sigterm_while_waiting_for_redis_exits_0(pool):
    worker = pool.start("--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    wait_until(
        lambda: bool(messages(worker, "waiting for Redis")) or not worker.alive(),
        timeout=60,
        what="a 'waiting for Redis' line",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert messages(worker, "stopped while waiting for Redis")
    assert not messages(worker, "started")


def test_banner_masks_the_password_and_wrong_credentials_are_one_line_exit_2(pool, tmp_path):
    secret = "s3cret-pass"
    with LocalRedisServer(extra_args=["--requirepass", secret]) as server:
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        admin_port = free_port()
        worker = pool.start(
            "--redis-url", url, "--admin-port", str(admin_port), "--admin-host", "127.0.0.1"
        )
        wait_until(
            lambda: bool(messages(worker, "worker fault running")) or not worker.alive(),
            timeout=60,
            what="the start banner",
        )
        head = messages(worker, "worker fault running")[0]["message"]
        assert f"redis redis://:***@127.0.0.1:{server.port}/0" in head
        assert f"admin http://127.0.0.1:{admin_port} (/metrics /livez /readyz)" in head
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert secret not in worker.output()

        wrong = pool.start("--redis-url", f"redis://:nope@127.0.0.1:{server.port}/0")
        assert wrong.wait(timeout=60) == 2
        errors = [line for line in wrong.output().splitlines() if "error:" in line]
        assert len(errors) == 1 and "refused the credentials" in errors[0], wrong.output()
        assert "Traceback" not in wrong.output() and "nope" not in wrong.output()
