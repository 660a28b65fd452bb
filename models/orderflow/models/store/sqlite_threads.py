"""The SQLite store's threads and connections, and the deadline every operation keeps.

``sqlite3`` blocks, so store work runs off the event loop, on threads this
module owns (never the loop's shared default executor):

* **one writer thread with one connection** runs every write, in order
  (:mod:`~orderflow.models.store.sqlite_writer`). SQLite admits one writer per
  file anyway; a single writer per process turns the process's concurrent writes
  into a FIFO queue instead of N connections busy-polling the file lock. When it
  becomes free it takes the next write and every write already queued behind it
  (at most 64) and commits them in **one** transaction, each write in its own
  savepoint (group commit, :mod:`~orderflow.models.store.sqlite_group`): with
  ``synchronous=FULL`` each ``COMMIT`` is an fsync, and the fsync, not the work,
  capped the pipeline. It never waits for more writes, so at low load a group is
  one write and no latency is added. ``group_commit=False`` gives every write a
  transaction of its own, as before. Between processes, each batch runs under a
  ``flock`` on ``<db>-writer.lock`` (:mod:`~orderflow.models.store.sqlite_writer_lock`):
  the kernel wakes the next process's writer as soon as one releases it, where
  SQLite's busy handler would sleep through releases.
* **a few reader threads, one connection each** run the reads. In WAL mode a
  reader never waits for a writer, so a write stuck on the file lock (another
  process holding it) must not hold reads up behind it in the same queue.

**The deadline, and why the answer never lies.** Every operation carries the
instant it must be done by (:mod:`orderflow.models.store.deadline`). The
thread gives SQLite only what is left of it as busy timeout, and retries a
``database is locked`` only until then. The caller waits until the deadline
too; if it passes first, the caller *abandons* the operation before raising
``DeadlineExceeded``: a queued operation is never started, a running statement
is interrupted (``Connection.interrupt()``; not inside a group commit, where
an interrupted ``UPDATE`` would roll back the neighbours' work too -- there the
job is rolled back to its savepoint once its body returns), and the transaction
or savepoint is rolled back instead of committed. (``interrupt()`` does not cut
SQLite's wait for a file lock short; that wait was given only what was left of
the deadline, give or take ``LOCK_WAIT_SLACK_MS``, so it ends then.) The one
step that cannot be taken back is ``COMMIT``, so it is claimed: under a lock
shared with the caller, the thread checks that the operation is neither
abandoned nor past its deadline and marks it *committing* before issuing
``COMMIT`` (in a group: before releasing the job's savepoint, so a job that
cannot claim is rolled back alone). A caller that times out after that claim
waits for the commit's outcome and reports it (a ``COMMIT`` in WAL mode holds
the write lock already and only appends to the log; a group's ``COMMIT`` that
fails fails every claimed job in it). So either the caller reports a commit that
happened, or it reports a failure and the transaction can never commit.

A caller that is cancelled (its client disconnected) abandons its operation
the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from orderflow.models.store.deadline import seconds_left
from orderflow.models.store.errors import StoreUnavailable
from orderflow.models.store.sqlite_group import WriteRequest
from orderflow.models.store.sqlite_job import (
    LOCK_WAIT_SLACK_MS,
    Job,
    bound_lock_wait,
    is_busy,
    retry_busy,
    rollback,
    transaction,
)
from orderflow.models.store.sqlite_writer import MAX_GROUP, WriterThread
from orderflow.models.store.sqlite_writer_lock import WriterFileLock

T = TypeVar("T")

__all__ = [
    "LOCK_WAIT_SLACK_MS",
    "MAX_GROUP",
    "Job",
    "StoreThreads",
    "bound_lock_wait",
    "is_busy",
    "retry_busy",
    "rollback",
    "transaction",
]


def _nobody_listens(future: asyncio.Future[Any]) -> None:
    """Take the outcome of an operation its caller gave up on, so that asyncio does not log
    it as never retrieved (it was answered already: abandoned, or cancelled)."""
    if not future.cancelled():
        future.exception()


class StoreThreads:
    """The writer thread, the reader threads and their connections."""

    def __init__(
        self,
        path: str,
        *,
        connect_writer: Callable[[Job], sqlite3.Connection],
        connect_reader: Callable[[Job], sqlite3.Connection],
        readers: int,
        busy_timeout: float = 30.0,
        on_busy: Callable[[], None] = lambda: None,
        group_commit: bool = True,
        writer_lock: WriterFileLock | None = None,
    ) -> None:
        if readers < 1:
            raise ValueError("a sqlite store needs at least one reader thread")
        self.path = path
        self._connect_reader = connect_reader
        self.writer = WriterThread(
            connect_writer,
            busy_timeout=busy_timeout,
            on_busy=on_busy,
            group_commit=group_commit,
            writer_lock=writer_lock,
        )
        """The writer thread; its counters (``commits``, ``jobs_committed``,
        ``largest_group``) say how well writes were grouped."""
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.closed = False
        self.in_flight = {"write": 0, "read": 0}
        """Operations asked for and not answered yet, per kind (queued or running)."""

    async def write(self, body: Callable[[sqlite3.Connection], T], *, deadline: float) -> T:
        """Run the transaction body ``body`` on the writer thread -- in a group commit
        when group commit is on -- and answer by ``deadline`` (see the module doc)."""
        groupable = self.writer.group_commit
        return await self._on_writer(deadline, body=body, groupable=groupable)

    async def run(
        self, fn: Callable[[sqlite3.Connection, Job], T], *, write: bool, deadline: float
    ) -> T:
        """Run ``fn(connection, job)`` as it is (it brings its own transaction) on the writer
        (``write``) or a reader thread, and answer by ``deadline``: past it the operation
        is abandoned (see the module doc)."""
        if write:
            return await self._on_writer(deadline, raw=fn)
        if self.closed:
            raise StoreUnavailable("store is closed")
        job = Job(deadline, self.path)
        # Carry the caller's contextvars into the thread: event factories called inside
        # the transaction build envelopes from the current correlation scope
        # (run_in_executor, unlike to_thread, does not copy them).
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        self.in_flight["read"] += 1
        try:
            future = loop.run_in_executor(self._readers, context.run, self._read_call, fn, job)
            return await self._answer(job, future, deadline)
        finally:
            self.in_flight["read"] -= 1

    async def _on_writer(
        self,
        deadline: float,
        *,
        body: Callable[[sqlite3.Connection], T] | None = None,
        raw: Callable[[sqlite3.Connection, Job], T] | None = None,
        groupable: bool = False,
    ) -> T:
        if self.closed:
            raise StoreUnavailable("store is closed")
        job = Job(deadline, self.path)
        # The caller's contextvars go with the request (see run): each job of a group
        # runs its body in its own caller's context.
        request = WriteRequest(
            job, contextvars.copy_context(), body=body, raw=raw, groupable=groupable
        )
        self.in_flight["write"] += 1
        try:
            self.writer.submit(request)
            result: T = await self._answer(job, asyncio.wrap_future(request.future), deadline)
            return result
        finally:
            self.in_flight["write"] -= 1

    @staticmethod
    async def _answer(job: Job, future: asyncio.Future[Any], deadline: float) -> Any:
        """Wait for ``future`` until ``deadline``; then abandon ``job``, unless its commit
        was claimed: then wait for (and report) the commit's outcome."""
        try:
            async with asyncio.timeout(seconds_left(deadline)):
                return await asyncio.shield(future)
        except TimeoutError:
            if job.abandon():
                future.add_done_callback(_nobody_listens)
                raise job.exceeded() from None
            # The commit was claimed before the deadline: report what it did.
            return await future
        except asyncio.CancelledError:
            job.abandon()  # unless it is committing: then it completes, unanswered
            future.add_done_callback(_nobody_listens)
            raise

    def _read_call(self, fn: Callable[[sqlite3.Connection, Job], T], job: Job) -> T:
        if job.abandoned:  # waited in the queue past its deadline: never started
            raise job.exceeded()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect_reader(job)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        job.start(conn)
        try:
            return fn(conn, job)
        finally:
            job.finish()

    async def close(self) -> None:
        """Let running and queued operations end (each is bounded by its deadline), then
        close every connection."""
        if self.closed:
            return
        self.closed = True

        def shut_down() -> None:
            self.writer.close()  # closes the writer connection on its own thread
            self._readers.shutdown(wait=True)
            with self._connections_lock:
                for conn in self._connections:
                    conn.close()
                self._connections.clear()

        await asyncio.get_running_loop().run_in_executor(None, shut_down)
