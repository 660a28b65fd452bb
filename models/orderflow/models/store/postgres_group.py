"""Group commit of ``place_order`` on PostgreSQL: the orders already queued, each in its
own savepoint, one ``COMMIT``.

Why: every order locks its items' stock rows (``FOR NO KEY UPDATE``) and holds
them through its ``COMMIT``, a WAL flush. Orders of one dish therefore ran one
commit at a time, whatever the pool size: ~100 orders/s of one dish was the
ceiling. Here a store's orders go through one *lane*: a runner task takes every
call already queued (never waits for more, so at low load a group is one call;
at most :data:`MAX_GROUP`) and runs them on one pooled connection in one
transaction, so they share the row lock's wait and the flush.

What each call keeps, exactly as with a transaction of its own
(:mod:`orderflow.models.store.postgres_pool`):

* **All or nothing.** Its body runs inside ``SAVEPOINT``; a body that raises
  (``OutOfStock``, ``UnknownItem``, a ``UniqueViolationError``...) is rolled back
  to it, and only that call gets the exception: the others go on and commit.
* **Its deadline.** A call past its deadline (or whose caller was cancelled)
  before its body is skipped with ``DeadlineExceeded``; its body runs under an
  ``asyncio`` timeout to its deadline; its caller stops waiting at the deadline
  unless the call was *claimed*. A call is claimed when its body finished in
  time and before its savepoint is released: from then on its caller waits for
  the group's ``COMMIT`` and gets its outcome (cancelled meanwhile, it waits
  too, then raises ``CancelledError``, as after ``COMMIT`` was sent alone). A
  caller cancelled during its body cancels it: rolled back to its savepoint,
  never committed.
* **Failures.** ``COMMIT`` cut off by a lost connection: ``OutcomeUnknown`` for
  every claimed call. The group's transaction lost before ``COMMIT``:
  ``StoreUnavailable`` for every call, nothing committed. A deadlock or
  serialization failure rolls the whole group back and runs it again (bodies may
  run more than once, as they already could), up to ``TRANSIENT_RETRIES``;
  calls past their deadline meanwhile drop out.
* **No stale answers.** Outcomes are given only when the attempt that computed
  them is over. A failed body's error is kept only if the attempt committed or
  no call before it was claimed (it then saw committed data only); otherwise
  its caller gets ``StoreUnavailable``: what it saw may have been rolled back.
* **Lock order.** A group of several calls first locks the union of their
  items, in id order (``prelude``), so groups of different processes, and
  orders on their own, still take item locks in one order and cannot deadlock.
* The body runs in the caller's ``contextvars`` (a task of its own with the
  caller's context), so log and correlation context stay the caller's.

``?group_commit=off`` in the URL gives every order its own transaction again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg

from orderflow.models.store.commit_metrics import COMMIT_SECONDS, GROUP_SIZE
from orderflow.models.store.deadline import deadline_for, seconds_left
from orderflow.models.store.errors import OutcomeUnknown, StoreUnavailable
from orderflow.models.store.postgres_pool import (
    BEGIN_WITHIN,
    TIMED_OUT,
    TRANSIENT,
    TRANSIENT_RETRIES,
    UNAVAILABLE,
    Connection,
    PostgresPool,
    commit,
    exceeded,
)

T = TypeVar("T")

MAX_GROUP = 64
"""Most calls in one group (as SQLite's): past a few dozen the flush is shared thinly
enough that the bodies dominate, and a larger group only keeps its first caller
waiting longer and redoes more work when it is re-run."""

SAVEPOINT = "call"
"""One name serves every call: each savepoint is released before the next one opens."""

Prelude = Callable[[Connection, list[str]], Awaitable[object]]
"""What a group of several calls runs after ``BEGIN``: given the union of their keys."""

State = Literal["queued", "running", "claimed", "failed", "done", "abandoned"]


@dataclass(eq=False, slots=True)
class _Call:
    body: Callable[[Connection], Awaitable[Any]]
    deadline: float
    context: contextvars.Context
    keys: Sequence[str]
    future: asyncio.Future[Any]
    state: State = "queued"
    task: asyncio.Task[Any] | None = field(default=None)

    def abandon(self) -> bool:
        """The caller gives up: ``True`` unless it was claimed (then its commit is coming)."""
        if self.state in ("claimed", "done"):
            return False
        if self.state == "running" and self.task is not None:
            self.task.cancel()  # rolled back to its savepoint by the runner
        self.state = "abandoned"
        return True

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Answer the caller (once); nobody waits for an abandoned call any more."""
        if self.state == "abandoned":
            self.future.cancel()
            return
        self.state = "done"
        if self.future.done():
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)

    def settle_if_late(self) -> bool:
        if self.state == "abandoned" or seconds_left(self.deadline) <= 0:
            self.settle(error=exceeded())
            return True
        return False


class _Retry(Exception):
    """A deadlock or serialization failure: the group was rolled back, run it again."""


class GroupCommit:
    """The lane of one store's ``place_order`` calls (or, off, one transaction each)."""

    def __init__(
        self,
        pool: PostgresPool,
        *,
        enabled: bool = True,
        prelude: Prelude | None = None,
        max_group: int = MAX_GROUP,
    ) -> None:
        if max_group < 1:
            raise ValueError("a group holds at least one call")
        self.enabled = enabled
        self._pool = pool
        self._prelude = prelude
        self._max_group = max_group
        self._queue: collections.deque[_Call] = collections.deque()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._commit_seconds = COMMIT_SECONDS.labels("postgresql")
        self._group_size = GROUP_SIZE.labels("postgresql")
        self.commits = 0
        """``COMMIT``s that kept at least one call (a group counts once)."""
        self.jobs_committed = 0
        """Calls those commits kept (``jobs_committed / commits``: mean group size)."""
        self.largest_group = 0
        """Most calls one ``COMMIT`` kept."""
        self.reruns = 0
        """Groups rolled back by a deadlock or serialization failure and run again."""

    async def transaction(
        self, body: Callable[[Connection], Awaitable[T]], *, keys: Sequence[str] = ()
    ) -> T:
        """Run ``body`` in a transaction (shared with the calls queued with it), within the
        deadline; ``keys`` are what the group's prelude locks for it."""
        if not self.enabled:
            return await self._pool.transaction(body, lambda seconds: self._count(1, seconds))
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        deadline = deadline_for(self._pool.deadline)
        call = _Call(body, deadline, contextvars.copy_context(), keys, loop.create_future())
        self._queue.append(call)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._serve(), context=contextvars.Context())
        try:
            async with asyncio.timeout(seconds_left(call.deadline)):
                result: T = await asyncio.shield(call.future)
                return result
        except TimeoutError:
            if call.abandon():
                raise exceeded() from None
            return await call.future  # claimed: its commit is coming
        except asyncio.CancelledError:
            if not call.abandon():  # claimed: wait for its COMMIT, as when sent alone
                with contextlib.suppress(BaseException):
                    await call.future
            raise

    async def close(self) -> None:
        """Refuse new calls; run those queued (each within its deadline)."""
        self._closed = True
        if self._runner is not None:
            await asyncio.wait([self._runner])

    def _count(self, jobs: int, seconds: float) -> None:
        self.commits += 1
        self.jobs_committed += jobs
        self.largest_group = max(self.largest_group, jobs)
        self._commit_seconds.observe(seconds)
        self._group_size.observe(jobs)

    # --- the runner

    async def _serve(self) -> None:
        while self._queue:
            batch: list[_Call] = []
            while self._queue and len(batch) < self._max_group:
                call = self._queue.popleft()
                if not call.settle_if_late():
                    batch.append(call)
            try:
                await self._run_group(batch)
            except BaseException as exc:  # never leave a caller waiting
                for call in batch:
                    call.settle(error=StoreUnavailable(f"PostgreSQL group commit failed: {exc}"))
                if not isinstance(exc, Exception):
                    raise

    async def _run_group(self, calls: list[_Call]) -> None:
        pending = calls
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            if not pending:
                return
            latest = max(call.deadline for call in pending)
            try:
                await self._attempt(pending, latest)
                return
            except _Retry as retry:
                self.reruns += 1
                pause = 0.005 * 2**attempt
                for call in pending:  # nobody was answered: every call starts again
                    if call.state != "abandoned":
                        call.state = "queued"
                if attempt == TRANSIENT_RETRIES or seconds_left(latest) <= pause:
                    error = retry.__cause__ or StoreUnavailable("PostgreSQL: deadlock")
                    for call in pending:
                        call.settle(error=error)
                    return
                await asyncio.sleep(pause)
                pending = [call for call in pending if not call.settle_if_late()]

    async def _attempt(self, calls: list[_Call], latest: float) -> None:
        """One try: answers every call, or raises :class:`_Retry` having answered none."""
        try:
            async with self._pool.acquire(latest) as conn:
                await self._attempt_on(conn, calls, latest)
        except (StoreUnavailable, TimeoutError) as exc:  # acquire, or the connection lost
            error = exceeded() if isinstance(exc, TimeoutError) else exc
            for call in calls:
                if call.state != "done":
                    call.settle(error=error)

    async def _attempt_on(self, conn: Connection, calls: list[_Call], latest: float) -> None:
        outcomes: list[tuple[_Call, bool, Any]] = []
        commit_sent = False
        try:
            async with asyncio.timeout(seconds_left(latest)):
                left_ms = max(1, int(seconds_left(latest) * 1000))
                await conn.execute(BEGIN_WITHIN.format(ms=left_ms))
                began = time.perf_counter()
                live = [call for call in calls if call.state == "queued"]
                if self._prelude is not None and len(live) > 1:
                    await self._prelude(conn, sorted({k for call in live for k in call.keys}))
            for call in calls:
                outcomes.append((call, *await self._run_one(conn, call)))
            claimed = sum(1 for _, ok, _ in outcomes if ok)
            if claimed:
                commit_sent = True
                await commit(conn)  # a lost connection: OutcomeUnknown
            else:  # nothing to keep: no flush
                await self._bounded(conn.execute("ROLLBACK"))
            seconds = time.perf_counter() - began
        except BaseException as exc:
            if not commit_sent and not _gone(conn):
                with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
                    await conn.execute("ROLLBACK")
            if isinstance(exc, TRANSIENT):
                raise _Retry() from exc
            _settle_failed(calls, outcomes, exc, commit_sent)
            if not isinstance(exc, Exception):
                raise
            return
        if claimed:
            self._count(claimed, seconds)
        for call, ok, value in outcomes:
            if ok:
                call.settle(result=value)
            else:
                call.settle(error=value)

    async def _run_one(self, conn: Connection, call: _Call) -> tuple[bool, Any]:
        """Run one call in its savepoint: ``(True, result)`` claimed and released, or
        ``(False, error)`` rolled back to its savepoint (or never begun). A deadlock or a
        lost connection is raised: the whole group is over."""
        if call.state == "abandoned":
            return False, None
        if seconds_left(call.deadline) <= 0:
            return False, exceeded()
        await self._bounded(conn.execute(f"SAVEPOINT {SAVEPOINT}"))
        call.state = "running"
        call.task = task = asyncio.get_running_loop().create_task(
            _within(call.body(conn), call.deadline), context=call.context
        )
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])
            raise
        error = None if task.cancelled() else task.exception()
        finished = not task.cancelled() and error is None and call.state == "running"
        if finished and seconds_left(call.deadline) > 0:
            call.state = "claimed"  # before the release: its caller stops giving up now
            await self._bounded(conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}"))
            return True, task.result()
        if isinstance(error, TRANSIENT):
            raise error
        if isinstance(error, UNAVAILABLE) or _gone(conn):
            raise StoreUnavailable(f"PostgreSQL store unavailable: {error}") from error
        await self._bounded(
            conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}")
        )
        if call.state == "abandoned":
            return False, None
        call.state = "failed"
        if error is None or isinstance(error, (TimeoutError, *TIMED_OUT)):
            late = exceeded()
            late.__cause__ = error
            return False, late
        return False, error

    async def _bounded(self, statement: Awaitable[T]) -> T:
        """A statement of the group's own (savepoints, ``ROLLBACK``): a claimed call's
        neighbours may outlive its deadline, so these are bounded by the store's budget."""
        async with asyncio.timeout(self._pool.deadline):
            return await statement


def _gone(conn: Connection) -> bool:
    """The connection is closed (the pool detaches it from us when it is lost)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


async def _within(body: Awaitable[T], deadline: float) -> T:
    async with asyncio.timeout(seconds_left(deadline)):
        return await body


def _settle_failed(
    calls: list[_Call],
    outcomes: list[tuple[_Call, bool, Any]],
    exc: BaseException,
    commit_sent: bool,
) -> None:
    """Answer every call of an attempt that did not commit (or may not have)."""
    lost: BaseException
    if commit_sent:
        lost = StoreUnavailable(f"PostgreSQL group commit failed: {exc!r}")
    elif isinstance(exc, (TimeoutError, *TIMED_OUT)):  # the latest deadline passed
        lost = exceeded()
    elif isinstance(exc, StoreUnavailable):  # the connection lost (said so already)
        lost = StoreUnavailable(str(exc))
    else:
        lost = StoreUnavailable(f"PostgreSQL group transaction lost: {exc!r}")
    lost.__cause__ = exc
    claimed_error: BaseException = lost  # not committed (COMMIT not sent, or refused by the server)
    if commit_sent and isinstance(exc, OutcomeUnknown):
        claimed_error = exc  # the connection lost during COMMIT (postgres_pool.commit)
    elif commit_sent and not isinstance(exc, Exception):
        claimed_error = OutcomeUnknown(f"COMMIT interrupted ({exc!r}): the outcome is unknown")
        claimed_error.__cause__ = exc
    elif commit_sent:
        claimed_error = exc  # the server refused the COMMIT: nothing was committed
    seen_claim = False
    answered: set[int] = set()
    for call, ok, value in outcomes:
        answered.add(id(call))
        if ok:
            seen_claim = True
            call.settle(error=claimed_error)
        elif value is None or not seen_claim:
            call.settle(error=value if value is not None else lost)
        else:  # it may have seen the claimed calls' rows, which were not committed
            call.settle(error=lost)
    for call in calls:
        if id(call) not in answered:
            call.settle(error=lost)
