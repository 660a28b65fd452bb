"""What ``benchmarks/scaling.py`` measures with, for the no-op agent and the orders
pipeline alike: worker processes, the CPU they and the servers use, and the consumer
group's own count of what it delivered (``XINFO GROUPS``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from orderflow.runtime.pytest_plugin import sync_client_for

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
# The workers' XREADGROUP BLOCK. An agent with a dispatcher (partitions, concurrency > 1)
# flushes the acks of its last batch with its next read, which on a stream gone quiet
# returns only after the block: at the default 1000 ms that tail would be most of a
# small run's time.
BLOCK_MS = 100


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def client_for(url: str) -> redis.Redis:
    """A synchronous client of one node or of the cluster (the test harness's own)."""
    return sync_client_for(url)


def group_counts(client: redis.Redis, streams: list[str]) -> tuple[int, int, int]:
    """Over every stream: entries its groups delivered, still pending, not yet read."""
    delivered = pending = lag = 0
    for stream in streams:
        for group in client.xinfo_groups(stream):
            delivered += group["entries-read"] or 0
            pending += group["pending"]
            lag += group["lag"] or 0
    return delivered, pending, lag


def drained(client: redis.Redis, streams: list[str], events: int) -> bool:
    delivered, pending, lag = group_counts(client, streams)
    return delivered >= events and pending == 0 and lag == 0


def wait_for(check: Callable[[], Any], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def workers(
    argv: list[str], count: int, env: Mapping[str, str], log_dir: Path, label: str
) -> Iterator[list[int]]:
    """``count`` copies of ``argv`` (your ``ORDERFLOW_*`` variables replaced by ``env``),
    SIGTERMed and waited for on exit; their output in ``log_dir``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    base.update({"ORDERFLOW_LOG_LEVEL": "WARNING", "ORDERFLOW_READ_BLOCK_MS": str(BLOCK_MS)})
    base.update(env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            with (log_dir / f"{label}-{count}-{index}.log").open("wb") as sink:
                procs.append(subprocess.Popen(argv, cwd=ROOT, env=base, stdout=sink, stderr=sink))
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class CpuClock:
    """Wall time, and the CPU time of the workers and of the servers, between
    :meth:`start` and :meth:`stop`."""

    def __init__(self, worker_pids: list[int], server_pids: list[int]) -> None:
        self.groups = {"workers": worker_pids, "servers": server_pids}
        self.cpu = {"workers": 0.0, "servers": 0.0}
        self.elapsed = 0.0
        self._t0 = 0.0

    def _sample(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}

    def start(self) -> None:
        self.cpu = self._sample()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self.elapsed = time.monotonic() - self._t0
        after = self._sample()
        self.cpu = {name: after[name] - self.cpu[name] for name in after}


def figure(pipeline: str, layout: str, count: int, events: int, streams: int,
           clock: CpuClock, delivered: int, pending: int) -> dict[str, Any]:  # fmt: skip
    """One row: events/s, busy cores (CPU seconds per second of the workers and the
    servers), events/s per busy core, and the servers' CPU per 10,000 events (what
    bounds one node). CPU is counted in 10 ms ticks: small runs are coarse."""
    eps = events / clock.elapsed
    busy = (clock.cpu["workers"] + clock.cpu["servers"]) / clock.elapsed
    return {
        "pipeline": pipeline, "layout": layout, "workers": count, "events": events,
        "streams": streams, "delivered": delivered, "pending": pending,
        "elapsed_s": round(clock.elapsed, 3), "events_per_s": round(eps),
        "busy_cores": round(busy, 2),
        "events_per_s_per_busy_core": round(eps / busy) if busy else None,
        "worker_cpu_s": round(clock.cpu["workers"], 2),
        "server_cpu_s": round(clock.cpu["servers"], 2),
        "server_cpu_s_per_10k": round(clock.cpu["servers"] * 10_000 / events, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
