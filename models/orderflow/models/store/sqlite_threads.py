"""The SQLite store's threads and connections, and the deadline every operation keeps.

``sqlite3`` blocks, so store work runs off the event loop, on threads this
module owns (never the loop's shared default executor):

* **one writer thread with one connection** runs every write, in order. SQLite
  admits one writer per file anyway; a single writer per process turns the
  process's concurrent writes into a FIFO queue instead of N connections
  busy-polling the file lock.
* **a few reader threads, one connection each** run the reads. In WAL mode a
  reader never waits for a writer, so a write stuck on the file lock (another
  process holding it) must not hold reads up behind it in the same queue.

**The deadline, and why the answer never lies.** Every operation carries the
instant it must be done by (:mod:`orderflow.models.store.deadline`). The
thread gives SQLite only what is left of it as busy timeout, and retries a
``database is locked`` only until then. The caller waits until the deadline
too; if it passes first, the caller *abandons* the operation before raising
``DeadlineExceeded``: a queued operation is never started, a running statement
is interrupted (``Connection.interrupt()``), and the transaction is rolled back
instead of committed. (``interrupt()`` does not cut SQLite's wait for a file
lock short; that wait was given only what was left of the deadline, give or
take ``LOCK_WAIT_SLACK_MS``, so it ends then.) The one step that cannot be
taken back is ``COMMIT``, so it is claimed: under a lock shared with
the caller, the thread checks that the operation is neither abandoned nor past
its deadline and marks it *committing* before issuing ``COMMIT``. A caller that
times out after that claim waits for the commit's outcome and reports it (a
``COMMIT`` in WAL mode holds the write lock already and only appends to the
log). So either the caller reports a commit that happened, or it reports a
failure and the transaction can never commit.

A caller that is cancelled (its client disconnected) abandons its operation
the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from orderflow.models.store.deadline import DeadlineExceeded, seconds_left
from orderflow.models.store.errors import StoreUnavailable

T = TypeVar("T")

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

State = Literal["queued", "running", "committing", "done", "abandoned"]


def is_busy(exc: BaseException) -> bool:
    """``database is locked``/``busy``: another connection holds the lock we need."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class Job:
    """One store operation, shared by the caller (on the loop) and the thread running it.

    The lock orders the two decisions that must not cross: the caller abandoning
    the operation, and the thread committing it.
    """

    def __init__(self, deadline: float, path: str) -> None:
        self.deadline = deadline
        self.path = path
        self.state: State = "queued"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # --- the caller's side

    def abandon(self) -> bool:
        """Give up unless the commit was claimed; ``True`` when nothing can commit any more."""
        with self._lock:
            if self.state in ("committing", "done"):
                return False
            if self.state == "running" and self._conn is not None:
                self._conn.interrupt()  # stops a running statement
            self.state = "abandoned"
            return True

    # --- the thread's side

    def start(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self.state == "abandoned":
                raise self.exceeded()
            self.state = "running"
            self._conn = conn

    def finish(self) -> None:
        with self._lock:
            self._conn = None
            if self.state != "abandoned":
                self.state = "done"

    def check(self) -> None:
        """Raise unless the operation may go on (not abandoned, deadline not passed)."""
        with self._lock:
            if self.state == "abandoned" or seconds_left(self.deadline) <= 0:
                raise self.exceeded()

    def claim_commit(self) -> None:
        """Claim the right to commit, or raise (the caller gave up, or the time is over)."""
        with self._lock:
            if self.state == "abandoned" or seconds_left(self.deadline) <= 0:
                raise self.exceeded()
            self.state = "committing"

    @property
    def abandoned(self) -> bool:
        with self._lock:
            return self.state == "abandoned"

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"sqlite store {self.path}: not done within the deadline (file locked or busy);"
            " nothing was committed"
        )


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back whatever is open; a rollback hit by a late interrupt is tried again."""
    for _ in range(3):
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            continue


def transaction(
    conn: sqlite3.Connection,
    job: Job,
    body: Callable[[sqlite3.Connection], T],
    mode: Literal["IMMEDIATE", "DEFERRED"],
    busy_timeout: float,
    on_busy: Callable[[], None],
) -> T:
    """Run ``body`` in one transaction within ``job``'s deadline; retry it while the file is
    locked. ``COMMIT`` only after :meth:`Job.claim_commit`."""

    def attempt() -> T:
        job.check()
        bound_lock_wait(conn, min(busy_timeout, seconds_left(job.deadline)))
        try:
            conn.execute(f"BEGIN {mode}")
            result = body(conn)
            if mode == "IMMEDIATE":
                job.claim_commit()
            conn.execute("COMMIT")
        except BaseException as exc:
            rollback(conn)
            if job.abandoned and not isinstance(exc, DeadlineExceeded):
                raise job.exceeded() from exc
            raise
        return result

    return retry_busy(job, attempt, on_busy)


_this_thread = threading.local()
LOCK_WAIT_SLACK_MS = 20
"""How far a connection's busy timeout may exceed what is left of a deadline before it is
set again: re-setting it for every operation would cost a statement each time."""


def bound_lock_wait(conn: sqlite3.Connection, seconds: float) -> None:
    """Make SQLite wait for a file lock at most ``seconds`` (within the slack) on ``conn``,
    the one connection of the calling thread."""
    wanted = max(1, int(seconds * 1000))
    current: int | None = getattr(_this_thread, "busy_ms", None)
    if current is None or current > wanted + LOCK_WAIT_SLACK_MS or current < wanted // 2:
        conn.execute(f"PRAGMA busy_timeout = {wanted}")
        _this_thread.busy_ms = wanted


def retry_busy(job: Job, action: Callable[[], T], on_busy: Callable[[], None]) -> T:
    """Run ``action`` again, with back-off, while the file is locked, until ``job``'s deadline."""
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if seconds_left(job.deadline) <= delay:
                raise job.exceeded() from exc
            on_busy()
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class StoreThreads:
    """The writer thread, the reader threads and their connections."""

    def __init__(
        self,
        path: str,
        *,
        connect_writer: Callable[[Job], sqlite3.Connection],
        connect_reader: Callable[[Job], sqlite3.Connection],
        readers: int,
    ) -> None:
        if readers < 1:
            raise ValueError("a sqlite store needs at least one reader thread")
        self.path = path
        self._connect_writer = connect_writer
        self._connect_reader = connect_reader
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.closed = False
        self.in_flight = {"write": 0, "read": 0}
        """Operations asked for and not answered yet, per kind (queued or running)."""

    async def run(
        self, fn: Callable[[sqlite3.Connection, Job], T], *, write: bool, deadline: float
    ) -> T:
        """Run ``fn(connection, job)`` on the writer (``write``) or a reader thread, and
        answer by ``deadline``: past it the operation is abandoned (see the module doc)."""
        if self.closed:
            raise StoreUnavailable("store is closed")
        job = Job(deadline, self.path)
        # Carry the caller's contextvars into the thread: event factories called inside
        # the transaction build envelopes from the current correlation scope
        # (run_in_executor, unlike to_thread, does not copy them).
        context = contextvars.copy_context()
        executor = self._writer if write else self._readers
        loop = asyncio.get_running_loop()
        kind = "write" if write else "read"
        self.in_flight[kind] += 1
        try:
            future = loop.run_in_executor(executor, context.run, self._call, fn, job, write)
            async with asyncio.timeout(seconds_left(deadline)):
                return await asyncio.shield(future)
        except TimeoutError:
            if job.abandon():
                raise job.exceeded() from None
            # The commit was claimed before the deadline: report what it did.
            return await future
        except asyncio.CancelledError:
            job.abandon()  # unless it is committing: then it completes, unanswered
            raise
        finally:
            self.in_flight[kind] -= 1

    def _call(self, fn: Callable[[sqlite3.Connection, Job], T], job: Job, write: bool) -> T:
        if job.abandoned:  # waited in the queue past its deadline: never started
            raise job.exceeded()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect_writer(job) if write else self._connect_reader(job)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        job.start(conn)
        try:
            return fn(conn, job)
        finally:
            job.finish()

    async def close(self) -> None:
        """Let running operations end (each is bounded by its deadline), then close."""
        if self.closed:
            return
        self.closed = True

        def shut_down() -> None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            with self._connections_lock:
                for conn in self._connections:
                    conn.close()
                self._connections.clear()

        await asyncio.get_running_loop().run_in_executor(None, shut_down)
