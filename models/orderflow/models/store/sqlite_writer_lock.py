"""The cross-process writer lock: a ``flock`` on ``<db>-writer.lock``, held for one group.

Why: every process that writes the file (the API, the orders and delivery
workers) has one writer thread, but between processes SQLite hands its write
lock over through its busy handler, which *sleeps* between polls (1, 2, 5, 10,
... up to 100 ms), on top of our own ``database is locked`` back-off. Under
contention a waiter sleeps through many releases and the file sits idle while
writes queue up: throughput fell as the offered load rose (a collapse, not a
plateau). ``flock(LOCK_EX)`` is a kernel wait queue: the waiter is woken when
the holder unlocks, with no polling and no sleep.

The writer thread takes it before ``BEGIN IMMEDIATE`` (and before opening its
connection, whose setup writes the schema) and releases it after the group's
``COMMIT``/``ROLLBACK``, so ``BEGIN IMMEDIATE`` finds SQLite's lock free unless a
writer that does not take the flock holds it: another tool, the ``sqlite3``
CLI, an older orderflow process during a rolling upgrade. For those SQLite's
busy timeout and our back-off stay in place, unchanged. Reads never take it
(WAL: readers never wait for the writer).

**It blocks.** The writer thread waits in ``flock`` itself rather than polling
``LOCK_NB`` with a short sleep: polling would bring back exactly the sleep this
lock removes (a waiter notices the release only at its next poll) and burn the
loaded machine's CPU on syscalls. A blocked thread cannot be given a deadline,
and it needs none for the callers: each caller keeps its own deadline and
abandons its job when it passes, and a job abandoned while the thread waited is
skipped, never committed, once the lock comes. What it bounds is the thread
itself (and so ``close()``, which joins it): an orderflow process holds the lock
for one group only, and a group lasts at most until the latest deadline of its
jobs (its lock wait for a foreign writer is bounded by that deadline too). A
holder that dies releases it at once (the kernel drops a dead process's locks,
there is no stale lock file to clean up). The one unbounded case is a holder
that is *stopped* (``SIGSTOP``, a debugger) while holding it: then ``close()``
waits until it resumes -- with SQLite's lock alone, that holder would have
blocked every write to the file just the same.

Platforms without ``fcntl`` (Windows) get no lock: the writer behaves as before,
with SQLite's busy handler between processes. ``sqlite:///x.db?writer_lock=off``
turns it off too (the benchmarks' baseline, and an escape hatch).
"""

from __future__ import annotations

import os
import time

from prometheus_client import Counter, Histogram

try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's busy handler alone, as before
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = "-writer.lock"
"""Appended to the database path: ``orders.db`` -> ``orders.db-writer.lock``, next to the
``-wal`` and ``-shm`` files SQLite keeps there."""

LOCK_WAIT_SECONDS = Histogram(
    "orderflow_store_lock_wait_seconds",
    "Time the writer waited for the cross-process writer lock before a group"
    " (only waits that found it held by another process).",
    ["store"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
LOCK_WAITS = Counter(
    "orderflow_store_lock_waits",
    "Groups whose writer found the cross-process writer lock held and waited for it.",
    ["store"],
)


def writer_lock_supported() -> bool:
    """``False`` where there is no ``fcntl.flock`` (Windows)."""
    return fcntl is not None


class WriterFileLock:
    """``flock(LOCK_EX)`` on ``<path>-writer.lock``; one per writer thread, used only by it.

    The file is opened on first use and kept open: a lock belongs to the open file
    description, and reopening it for every group would cost two syscalls more."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + LOCK_SUFFIX
        self._fd: int | None = None
        self._held = False
        self._wait_seconds = LOCK_WAIT_SECONDS.labels("sqlite")
        self._waits_counter = LOCK_WAITS.labels("sqlite")
        self.waits = 0
        """Acquisitions that found the lock held (by another process) and waited."""
        self.wait_seconds = 0.0
        """Total seconds those waits took."""

    def acquire(self) -> None:
        """Block until this process holds the lock (see the module doc for why it blocks)."""
        assert fcntl is not None and not self._held
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held elsewhere: wait in the kernel's queue
            began = time.perf_counter()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            waited = time.perf_counter() - began
            self.waits += 1
            self.wait_seconds += waited
            self._waits_counter.inc()
            self._wait_seconds.observe(waited)
        self._held = True

    def release(self) -> None:
        """Let the next waiting process in (a no-op when not held)."""
        if self._held and self._fd is not None and fcntl is not None:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release and close the file (closing alone would release it too)."""
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
