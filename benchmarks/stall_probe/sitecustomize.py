"""Where a process's requests wait: event-loop stalls, GC pauses, SQLite lock waits.

Why: a POST p99 of hundreds of ms at 50 orders/s, with the API far from CPU-bound,
has three suspects that look alike from the client: the event loop blocked by
something synchronous, a full garbage collection, and the SQLite writer thread
waiting for the file's write lock while another process holds it. This probe puts a
number on each in every process of a stack, without changing the project's code.

How it gets into a process: it is a ``sitecustomize`` module, which the interpreter
imports at start-up from ``PYTHONPATH``. Put this directory first on ``PYTHONPATH``
and set ``STALL_PROBE_DIR`` (not an ``ORDERFLOW_`` variable: ``benchmarks/stack.py``
hands its processes every variable of the caller except those) and every Python
process started from there, the stack's processes and Sanic's worker processes
included, records what follows. (It shadows any other ``sitecustomize``, such as
Debian's, for those processes; and a benchmark that sets ``PYTHONPATH`` itself, like
``post_cost.py --baseline`` for its baseline stack, leaves the probe out of them.)

* ``lag``: every ~5 ms a thread schedules a callback on the process's event loop
  (``call_soon_threadsafe``) and records how long it took to run: time the loop spent
  in other callbacks (or waiting for the GIL, or for a CPU) before it could. Works with
  uvloop: the loop is found through ``asyncio._set_running_loop``, which both loops call.
* ``gc0`` / ``gc1`` / ``gc2``: each garbage collection's duration, by generation
  (``gc.callbacks``; a collection stops every thread of the process).
* ``begin``: each ``BEGIN`` statement's duration on a connection made by
  ``sqlite3.connect``. ``BEGIN IMMEDIATE`` returns once the file's write lock is
  taken, so its duration is the wait for the other processes' writes (SQLite's
  busy handler sleeping between polls).

Each process rewrites ``STALL_PROBE_DIR/<pid>.json`` every second (a forked Sanic
worker does not run ``atexit``): per series the count, total, p99, max and the number
over 10 and 50 ms, plus the wall-clock time of the last events over 20 ms, to line
them up with a benchmark's log. ``benchmarks/stall_report.py DIR`` prints the table.
Benchmark use only: the probe costs a thread and a few microseconds per statement.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import gc
import json
import os
import sqlite3
import sys
import threading
import time
from typing import Any

SLOW_MS = 20.0  # events at least this long keep their wall-clock time
KEPT_EVENTS = 200  # the last slow events kept per series
PING_INTERVAL = 0.005  # seconds between two loop pings


class Series:
    """Durations of one kind, in ms, and the last slow ones with their time."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.slow: list[tuple[float, float]] = []

    def add(self, ms: float) -> None:
        self.durations.append(ms)
        if ms >= SLOW_MS:
            self.slow.append((round(time.time(), 3), round(ms, 1)))
            del self.slow[:-KEPT_EVENTS]

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        if not ordered:
            return {"n": 0}
        return {
            "n": len(ordered),
            "total_ms": round(sum(ordered), 1),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
            "max_ms": round(ordered[-1], 2),
            "over_10ms": sum(ms > 10 for ms in ordered),
            "over_50ms": sum(ms > 50 for ms in ordered),
            "slow": self.slow,
        }


SERIES = {name: Series() for name in ("lag", "gc0", "gc1", "gc2", "begin")}
_gc_started: list[float] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    now = time.perf_counter()
    if phase == "start":
        _gc_started[:] = [now]
    elif _gc_started:
        SERIES[f"gc{info['generation']}"].add(1000 * (now - _gc_started[0]))


class TimedConnection(sqlite3.Connection):
    """A connection that times its ``BEGIN`` statements (the wait for the write lock)."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if not sql.startswith("BEGIN"):
            return super().execute(sql, *args)
        started = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            SERIES["begin"].add(1000 * (time.perf_counter() - started))


def _timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", TimedConnection)
    return _connect(*args, **kwargs)


def _record_lag(sent: float, ran: threading.Event) -> None:
    SERIES["lag"].add(1000 * (time.perf_counter() - sent))
    ran.set()


def _ping_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Thread: how long a callback scheduled on ``loop`` waits before it runs."""
    while not loop.is_closed():
        ran = threading.Event()
        try:
            loop.call_soon_threadsafe(_record_lag, time.perf_counter(), ran)
        except RuntimeError:  # the loop closed
            return
        ran.wait(5.0)
        time.sleep(PING_INTERVAL)


def _watching_set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    _set_running_loop(loop)
    if loop is None or threading.current_thread() is not threading.main_thread():
        return
    if id(loop) not in _watched:
        _watched.add(id(loop))
        threading.Thread(target=_ping_loop, args=(loop,), name="stall-probe", daemon=True).start()


def _dump_every_second(directory: str) -> None:
    path = os.path.join(directory, f"{os.getpid()}.json")
    while True:
        time.sleep(1.0)
        multiprocessing = sys.modules.get("multiprocessing")
        report = {
            "argv": " ".join(sys.argv),  # read late: a spawned child gets its parent's argv
            # "MainProcess" (also without multiprocessing: no child of it runs without),
            # or the child's name (Sanic's workers: "Sanic-Server-0-0").
            "process": multiprocessing.current_process().name if multiprocessing else "MainProcess",
            "series": {name: series.summary() for name, series in SERIES.items()},
        }
        try:
            with open(path + ".tmp", "w") as file:
                json.dump(report, file)
            os.replace(path + ".tmp", path)
        except OSError:
            return  # the directory is gone: the run is over


_connect = sqlite3.connect
_set_running_loop = asyncio.events._set_running_loop
_watched: set[int] = set()
_DIRECTORY = os.environ.get("STALL_PROBE_DIR", "")


def _start_dumping() -> None:
    threading.Thread(
        target=_dump_every_second, args=(_DIRECTORY,), name="stall-probe-dump", daemon=True
    ).start()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads and its own figures to count."""
    for series in SERIES.values():
        series.durations.clear()
        series.slow.clear()
    _watched.clear()
    _start_dumping()


if _DIRECTORY:
    gc.callbacks.append(_on_gc)
    sqlite3.connect = _timed_connect  # type: ignore[assignment]
    # Both names: asyncio's own loop calls the first, uvloop imports the second.
    asyncio.events._set_running_loop = _watching_set_running_loop
    asyncio._set_running_loop = _watching_set_running_loop
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _start_dumping()
