"""The SQLite store's writer thread: one connection, the process's writes in order, grouped.

A thread of our own rather than a one-worker ``ThreadPoolExecutor``: an executor
hands its worker one call at a time, and group commit needs to see the whole
queue -- when the thread becomes free it takes the next write *and every write
already queued behind it* (up to :data:`MAX_GROUP`), without waiting for more,
and commits them together (:mod:`~orderflow.models.store.sqlite_group`).

Three kinds of request share the queue, in order:

* a *groupable* transaction body (every store write when group commit is on);
* a transaction body run alone, with a transaction of its own (group commit off:
  ``sqlite:///x.db?group_commit=off``, the escape hatch and the benchmark's baseline);
* a *raw* call that brings its own transaction (the writer connection's setup,
  and tests of the commit-or-abandon decision).

A group never reaches past a request that is not groupable, so the order in
which writes were asked for is the order in which they run.

Between processes, each batch (a group, a write alone, the connection's setup
with its schema) runs under the cross-process writer lock
(:mod:`~orderflow.models.store.sqlite_writer_lock`) when there is one: the
thread waits for work, takes the lock, *then* takes the batch -- so the writes
that queued while it waited for another process join the group -- and releases
the lock after the batch's ``COMMIT``/``ROLLBACK``.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Callable

from orderflow.models.store.commit_metrics import COMMIT_SECONDS, GROUP_SIZE
from orderflow.models.store.errors import StoreUnavailable
from orderflow.models.store.sqlite_group import WriteRequest, commit_group
from orderflow.models.store.sqlite_job import Job, transaction
from orderflow.models.store.sqlite_writer_lock import WriterFileLock

MAX_GROUP = 64
"""Most jobs in one group commit. Past a few dozen the fsync (~1.3 ms here) is already
shared so thinly (~20 us a job) that the bodies' own work dominates; a larger group
would only hold the file's write lock longer (other processes wait for it), keep
the group's first caller waiting for more bodies before its ``COMMIT``, and redo
more work when a locked file makes the group retry."""


class WriterThread:
    """The queue of write requests and the one thread (and connection) that runs them."""

    def __init__(
        self,
        connect: Callable[[Job], sqlite3.Connection],
        *,
        busy_timeout: float,
        on_busy: Callable[[], None],
        group_commit: bool,
        writer_lock: WriterFileLock | None = None,
        max_group: int = MAX_GROUP,
    ) -> None:
        if max_group < 1:
            raise ValueError("a group holds at least one job")
        self.group_commit = group_commit
        self._connect = connect
        self._busy_timeout = busy_timeout
        self._on_busy = on_busy
        self._max_group = max_group
        self.writer_lock = writer_lock
        """The cross-process lock each batch runs under; ``None``: SQLite's busy handler only."""
        self._queue: collections.deque[WriteRequest] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._commit_seconds = COMMIT_SECONDS.labels("sqlite")
        self._group_size = GROUP_SIZE.labels("sqlite")
        self.commits = 0
        """``COMMIT``s of store writes that kept something (a group counts once)."""
        self.jobs_committed = 0
        """Store writes those commits kept (``jobs_committed / commits``: mean group size)."""
        self.largest_group = 0
        """Most store writes one ``COMMIT`` kept."""

    def submit(self, request: WriteRequest) -> None:
        """Queue ``request``; its caller waits on ``request.future``."""
        with self._wake:
            if self._closing:
                raise StoreUnavailable("store is closed")
            if self._thread is None:  # started with the first write, like an executor's
                self._thread = threading.Thread(
                    target=self._serve, name="sqlite-writer", daemon=True
                )
                self._thread.start()
            self._queue.append(request)
            self._wake.notify()

    def close(self) -> None:
        """Blocking: run what is queued (each bounded by its deadline), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    # --- the thread

    def _wait_for_work(self) -> bool:
        """Block until a request is queued; ``False`` once closing with nothing left."""
        with self._wake:
            while not self._queue and not self._closing:
                self._wake.wait()
            return bool(self._queue)

    def _next_batch(self) -> list[WriteRequest]:
        """The next request, and every groupable one queued right behind it (the queue is
        not empty: only this thread takes from it, after :meth:`_wait_for_work`)."""
        with self._wake:
            batch = [self._queue.popleft()]
            if batch[0].groupable:
                while self._queue and self._queue[0].groupable and len(batch) < self._max_group:
                    batch.append(self._queue.popleft())
            return batch

    def _serve(self) -> None:
        try:
            while self._wait_for_work():
                if self.writer_lock is None:
                    self._run_batch(self._next_batch())
                    continue
                try:
                    self.writer_lock.acquire()
                except OSError as exc:  # the lock file cannot be opened: nor could the -wal
                    failure = StoreUnavailable(f"writer lock {self.writer_lock.path}: {exc}")
                    for request in self._next_batch():
                        request.settle(error=failure)
                    continue
                try:
                    self._run_batch(self._next_batch())
                finally:
                    self.writer_lock.release()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self.writer_lock is not None:
                self.writer_lock.close()

    def _run_batch(self, batch: list[WriteRequest]) -> None:
        try:
            self._run(batch)
        except Exception as exc:  # never lose the thread: answer, and go on
            for request in batch:
                request.settle(error=exc)

    def _run(self, batch: list[WriteRequest]) -> None:
        live = [request for request in batch if not request.job.abandoned]
        for request in batch:
            if request.job.abandoned:  # waited in the queue past its deadline: never started
                request.settle(error=request.job.exceeded())
        if not live:
            return
        conn = self._conn
        if conn is None:
            try:
                conn = self._conn = self._connect(live[0].job)
            except Exception as exc:
                for request in live:
                    request.settle(error=exc)
                return
        if live[0].groupable:
            commit_group(
                conn,
                live,
                busy_timeout=self._busy_timeout,
                on_busy=self._on_busy,
                on_commit=self._count_commit,
                on_end=self._transaction_ended,
            )
            return
        (request,) = live  # never grouped: alone in its batch
        self._run_alone(conn, request)

    def _run_alone(self, conn: sqlite3.Connection, request: WriteRequest) -> None:
        job = request.job
        try:
            try:
                job.start(conn)
                if request.raw is not None:
                    result = request.context.run(request.raw, conn, job)
                else:
                    assert request.body is not None  # a request carries one of the two
                    result = request.context.run(
                        transaction,
                        conn,
                        job,
                        request.body,
                        "IMMEDIATE",
                        self._busy_timeout,
                        self._on_busy,
                        lambda seconds: self._count_commit(1, seconds),
                    )
            finally:  # committed, rolled back or given up, retries included: over
                self._transaction_ended()
        except Exception as exc:
            request.settle(error=exc)
        else:
            request.settle(result=result)

    def _transaction_ended(self) -> None:
        """The transaction is over (a group's at its ``COMMIT``/``ROLLBACK``, a write
        alone's once it and its retries are done): let the next process's writer in now,
        before this thread answers its callers. Answering is a future per
        caller, each waking the event loop, which then competes with this thread for the
        GIL: done with the lock still held, every other process waited through it.
        Measured (``benchmarks/store_commits.py``, 3 processes): 11-24 % more writes/s,
        write p99 26-32 ms -> 15-17 ms (docs/store.md)."""
        if self.writer_lock is not None:
            self.writer_lock.release()

    def _count_commit(self, jobs: int, seconds: float) -> None:
        self.commits += 1
        self.jobs_committed += jobs
        self.largest_group = max(self.largest_group, jobs)
        self._commit_seconds.observe(seconds)
        self._group_size.observe(jobs)
