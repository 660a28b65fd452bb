"""One store operation's side of the deadline (:class:`Job`), and the transaction helpers.

Shared by the writer thread (:mod:`~orderflow.models.store.sqlite_writer`, which
runs a write alone or in a group commit) and the reader threads
(:mod:`~orderflow.models.store.sqlite_threads`, where the whole protocol is
told). Kept apart so both can use it without importing each other.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from orderflow.models.store.deadline import DeadlineExceeded, seconds_left

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

    def start(self, conn: sqlite3.Connection | None) -> None:
        """The thread begins the operation; ``conn`` is what :meth:`abandon` may interrupt.

        A job in a group commit passes ``None``: its connection carries the other jobs'
        work too, and an interrupted ``INSERT``/``UPDATE`` rolls back the *whole*
        transaction (SQLite's rule), claimed neighbours included. Nothing in a group
        waits (the write lock is already held), so such a job is rolled back to its
        savepoint when its claim fails instead.
        """
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
    on_commit: Callable[[float], None] | None = None,
) -> T:
    """Run ``body`` in one transaction within ``job``'s deadline; retry it while the file is
    locked. ``COMMIT`` only after :meth:`Job.claim_commit`. ``on_commit`` gets the seconds
    the committed transaction held the lock (``BEGIN`` returned to ``COMMIT`` returned)."""

    def attempt() -> T:
        job.check()
        bound_lock_wait(conn, min(busy_timeout, seconds_left(job.deadline)))
        try:
            conn.execute(f"BEGIN {mode}")
            began = time.perf_counter()
            result = body(conn)
            if mode == "IMMEDIATE":
                job.claim_commit()
            conn.execute("COMMIT")
            if on_commit is not None:
                on_commit(time.perf_counter() - began)
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
