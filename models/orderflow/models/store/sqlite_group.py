"""Group commit: the write jobs already queued, each in its own savepoint, one ``COMMIT``.

Why: with ``synchronous=FULL`` in WAL mode every ``COMMIT`` is an fsync, and
SQLite admits one writer per file, shared by the API and the workers. One
transaction per write made the fsync, not the work, the pipeline's ceiling
(15-20 writes per order at ~1.3 ms each). The writer thread
(:mod:`~orderflow.models.store.sqlite_writer`) hands :func:`commit_group`
whatever writes are queued when it becomes free -- it never waits for more, so
at low load a group is one write and latency does not grow -- and they share
the fsync.

What each job keeps, exactly as when it had a transaction of its own:

* **All or nothing.** Its body runs inside ``SAVEPOINT``; a body that raises
  (``OutOfStock``, ``UnknownItem``, an ``IntegrityError``...) is rolled back to
  it, and only that job gets the exception: the others go on and commit.
* **Abandon or commit, never both.** Before its body a job that was abandoned or
  is past its deadline is skipped; after its body it claims its commit
  (:meth:`Job.claim_commit <orderflow.models.store.sqlite_job.Job.claim_commit>`)
  *before* its savepoint is released, so a job whose claim fails is rolled back
  alone. A claimed job's caller waits for the group's ``COMMIT`` and gets its
  outcome: if the ``COMMIT`` fails, every claimed job gets that error and nothing
  of the group is committed.
* **Locked file.** ``database is locked`` (another process holds the file) rolls
  the whole group back and retries it with back-off, until the latest deadline
  in the group; jobs whose deadline passes meanwhile drop out with
  ``DeadlineExceeded``. Bodies may so run more than once, as they already could
  (the contract: event factories only build messages). Each job's outcome is
  given only when the attempt that decided it is over, so no caller hears of a
  result (an ``OutOfStock`` included) computed in an attempt that was rolled back.
* **A lost transaction.** Some errors make SQLite roll back the whole transaction
  by itself (``SQLITE_FULL``, ``SQLITE_IOERR``). Every job is then checked
  against ``in_transaction``: once the group's transaction is gone, no later body
  may run (it would run outside the group, and its ``RELEASE`` would commit it on
  its own), and every job of the group fails with that error.
"""

from __future__ import annotations

import contextvars
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from orderflow.models.store.deadline import DeadlineExceeded, seconds_left
from orderflow.models.store.errors import StoreUnavailable
from orderflow.models.store.sqlite_job import Job, bound_lock_wait, is_busy, rollback


@dataclass(eq=False, slots=True)
class WriteRequest:
    """One write handed to the writer thread, and where its caller waits for the answer.

    Exactly one of ``body`` (a transaction body: the writer brings ``BEGIN`` and
    ``COMMIT``) and ``raw`` (run as it is, given the job: it handles its own
    transaction) is set. Only ``groupable`` bodies join a group commit.
    """

    job: Job
    context: contextvars.Context
    body: Callable[[sqlite3.Connection], Any] | None = None
    raw: Callable[[sqlite3.Connection, Job], Any] | None = None
    groupable: bool = False
    future: Future[Any] = field(default_factory=Future)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Answer the caller (once); the job is over, whatever the answer."""
        self.job.finish()
        try:
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)
        except InvalidStateError:  # answered already (a caller's future cancelled)
            pass

    def settle_if_late(self) -> bool:
        """Answer ``DeadlineExceeded`` if the caller gave up or the time is over."""
        if self.job.abandoned or seconds_left(self.job.deadline) <= 0:
            self.settle(error=self.job.exceeded())
            return True
        return False


class GroupLost(StoreUnavailable):
    """SQLite rolled the group's transaction back by itself; ``__cause__`` says why."""


SAVEPOINT = "job"
"""One name serves every job: each savepoint is released before the next one opens."""


def commit_group(
    conn: sqlite3.Connection,
    requests: list[WriteRequest],
    *,
    busy_timeout: float,
    on_busy: Callable[[], None],
    on_commit: Callable[[int, float], None],
    on_end: Callable[[], None] = lambda: None,
) -> None:
    """Run ``requests`` (groupable bodies) in one transaction and answer every one of them.

    ``on_commit(jobs, seconds)`` is told of a ``COMMIT`` that kept ``jobs`` writes and
    held the write lock ``seconds`` (``BEGIN`` returned to ``COMMIT`` returned) before
    any caller is answered, so a caller that reads the counters sees its own commit.
    ``on_end()`` is called as soon as the group's ``COMMIT`` or ``ROLLBACK`` returned,
    before anything else: the writer releases its cross-process lock there, so another
    process's group does not wait while this one counts and answers its callers."""
    pending = [request for request in requests if not request.settle_if_late()]
    delay = 0.005
    while pending:
        latest = max(request.job.deadline for request in pending)
        try:
            _attempt(conn, pending, min(busy_timeout, seconds_left(latest)), on_commit, on_end)
            return
        except sqlite3.OperationalError as exc:  # from BEGIN, or busy later (rolled back)
            if not is_busy(exc):  # BEGIN failed otherwise: nothing ran, nothing to retry
                for request in pending:
                    request.settle(error=exc)
                return
            if seconds_left(latest) <= delay:
                for request in pending:
                    request.settle(error=request.job.exceeded())
                return
            on_busy()
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            pending = [request for request in pending if not request.settle_if_late()]


def _attempt(
    conn: sqlite3.Connection,
    requests: list[WriteRequest],
    lock_wait: float,
    on_commit: Callable[[int, float], None],
    on_end: Callable[[], None],
) -> None:
    """One try: answers every request, or raises the ``OperationalError`` of ``BEGIN``, or a
    busy one after rolling everything back (nobody has been answered either way)."""
    bound_lock_wait(conn, lock_wait)
    conn.execute("BEGIN IMMEDIATE")  # busy: nothing is open, nothing to answer
    began = time.perf_counter()
    outcomes: list[tuple[WriteRequest, bool, Any]] = []
    try:
        for request in requests:
            if not conn.in_transaction:
                raise GroupLost("the transaction was rolled back by SQLite")
            outcomes.append((request, *_run_one(conn, request)))
        claimed = sum(1 for _, ok, _ in outcomes if ok)
        if claimed and not conn.in_transaction:
            raise GroupLost("the transaction was rolled back by SQLite")
        conn.execute("COMMIT" if claimed else "ROLLBACK")  # nothing to keep: no fsync
        seconds = time.perf_counter() - began
    except BaseException as exc:
        rollback(conn)  # whatever happened, the group's transaction is not left open
        if is_busy(exc):
            raise
        on_end()
        error = exc.__cause__ if isinstance(exc, GroupLost) and exc.__cause__ else exc
        answered = {id(request) for request, _, _ in outcomes}
        for request, ok, value in outcomes:
            request.settle(error=error if ok else value)
        for request in requests:
            if id(request) not in answered:
                request.settle(error=error)
        if not isinstance(exc, Exception):
            raise
        return
    on_end()
    if claimed:
        on_commit(claimed, seconds)
    for request, ok, value in outcomes:
        if ok:
            request.settle(result=value)
        else:
            request.settle(error=value)


def _run_one(conn: sqlite3.Connection, request: WriteRequest) -> tuple[bool, Any]:
    """Run one job in its savepoint: ``(True, result)`` claimed and released, or
    ``(False, error)`` rolled back to its savepoint (or never begun)."""
    job = request.job
    body = request.body
    assert body is not None  # groupable requests carry a body
    try:
        job.start(None)  # no interrupt inside a group: see Job.start
        job.check()
    except DeadlineExceeded as exc:
        return False, exc
    conn.execute(f"SAVEPOINT {SAVEPOINT}")
    try:
        result = request.context.run(body, conn)
        job.claim_commit()
    except Exception as exc:
        if is_busy(exc):
            raise  # the whole group is retried
        _rollback_to_savepoint(conn, exc)
        if job.abandoned and not isinstance(exc, DeadlineExceeded):
            error: BaseException = job.exceeded()
            error.__cause__ = exc
            return False, error
        return False, exc
    conn.execute(f"RELEASE {SAVEPOINT}")
    return True, result


def _rollback_to_savepoint(conn: sqlite3.Connection, cause: BaseException) -> None:
    """Undo one job's work and drop its savepoint; raise :class:`GroupLost` when the
    whole transaction is gone (SQLite rolled it back on the body's error)."""
    for _ in range(3):
        if not conn.in_transaction:
            raise GroupLost("the transaction was rolled back by SQLite") from cause
        try:
            conn.execute(f"ROLLBACK TO {SAVEPOINT}")
            conn.execute(f"RELEASE {SAVEPOINT}")
            return
        except sqlite3.OperationalError:
            continue
    raise GroupLost("a job could not be rolled back to its savepoint") from cause
