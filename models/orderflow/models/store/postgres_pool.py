"""The PostgreSQL store's connections: URL, pool, schema, transactions, failures.

Kept apart from what the store *does* (:mod:`orderflow.models.store.postgres`)
because every operation goes through the same three decisions made here:

* **Which errors mean "the server cannot be used now"** (refused, dropped,
  restarting, too many connections, a pooled connection it closed meanwhile):
  they become :class:`StoreUnavailable`, so callers never catch a driver's
  exception. Constraint violations and domain errors pass unchanged.
* **Which errors are worth re-running a transaction for**: a deadlock or a
  serialization failure (neither is expected: every transaction locks rows in
  one order). The body runs again, event factory included, up to
  ``TRANSIENT_RETRIES`` times. A connection lost in the middle is *not* re-run:
  if it was the ``COMMIT``, the outcome is unknown.
* **The deadline** (:mod:`orderflow.models.store.deadline`): the pool acquire
  waits only what is left of it; a transaction sets ``lock_timeout`` and
  ``statement_timeout`` (``SET LOCAL``, in the same round trip as ``BEGIN``) to
  what is left, and its body runs under
  an ``asyncio`` timeout to the same instant. ``COMMIT`` is sent only if the body
  finished before the deadline; otherwise the transaction is rolled back and
  ``DeadlineExceeded`` raised, so it can never commit later. Once sent, a
  ``COMMIT`` is waited for even if the caller is cancelled (an abandoned
  ``COMMIT`` would leave the outcome unknown); if the connection breaks during
  it, the outcome *is* unknown, and that is what is raised (``OutcomeUnknown``).
* **The schema** is created on open in one transaction holding an advisory
  lock: concurrent ``CREATE TABLE IF NOT EXISTS`` in several processes can
  otherwise fail on the catalog's unique indexes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from orderflow.models.store import postgres_sql as sql
from orderflow.models.store.deadline import (
    DEFAULT_DEADLINE_SECONDS,
    DeadlineExceeded,
    deadline_for,
    seconds_left,
)
from orderflow.models.store.errors import OutcomeUnknown, StoreUnavailable

T = TypeVar("T")

# Strings: asyncpg's classes are generic only in its stubs (asyncpg-stubs), not at run time.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

POSTGRES_SCHEMES = ("postgresql", "postgres")
POOL_PARAMETERS = ("pool_min_size", "pool_max_size")
GROUP_COMMIT_PARAMETER = "group_commit"
"""``on`` (default) or ``off``: group commit of ``place_order``
(:mod:`orderflow.models.store.postgres_group`)."""
STORE_PARAMETERS = (*POOL_PARAMETERS, GROUP_COMMIT_PARAMETER)
"""URL query parameters read here (and removed before the URL reaches asyncpg, which
would send unknown ones to the server as settings)."""

TRANSIENT_RETRIES = 5
TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. a pooled connection the server closed meanwhile
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)
"""Errors that say the server cannot be used now, as opposed to a wrong statement."""
TIMED_OUT = (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)
"""The server gave up at ``lock_timeout`` / ``statement_timeout`` (set from the deadline)."""
BEGIN_WITHIN = "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}"
"""Start a transaction whose lock waits and statements end by the deadline: one round
trip (a simple query of three statements; ``{ms}`` is an integer we format)."""


def split_postgres_url(url: str) -> tuple[str, dict[str, int]]:
    """The URL for asyncpg (without any of :data:`STORE_PARAMETERS`), and the pool sizes
    given in its query string."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = {name: int(value) for name, value in query if name in POOL_PARAMETERS}
    rest = [(name, value) for name, value in query if name not in STORE_PARAMETERS]
    return urlunsplit(parts._replace(query=urlencode(rest))), sizes


def group_commit_from_url(url: str) -> bool:
    """``postgresql://.../db?group_commit=off`` -> ``False``; on when not given."""
    values = [v for k, v in parse_qsl(urlsplit(url).query) if k == GROUP_COMMIT_PARAMETER]
    value = values[-1].lower() if values else "on"
    if value not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f"{GROUP_COMMIT_PARAMETER} must be on or off, got {value!r} in {url!r}")
    return value in ("on", "true", "1")


def affected_rows(status: str) -> int:
    """The row count of a command tag (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresPool:
    """An asyncpg pool whose failures are the store's errors, and whose work keeps a deadline."""

    def __init__(self, pool: Pool, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
        self._pool = pool
        self.deadline = deadline
        """Seconds an operation may take when its caller set no deadline of its own."""
        self.closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> PostgresPool:
        """Connect, and create the schema (idempotent, safe across processes)."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout
            )
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL store: {exc}") from exc
        opened = cls(pool, deadline=deadline)
        try:
            await opened.transaction(_create_schema)
        except BaseException:
            await opened.close()
            raise
        return opened

    def acquire(self, deadline: float) -> _Acquired:
        """A pooled connection (``async with``), waited for until ``deadline`` at most."""
        if self.closed:
            raise StoreUnavailable("store is closed")
        return _Acquired(self._pool.acquire(timeout=seconds_left(deadline)))

    async def transaction(
        self,
        body: Callable[[Connection], Awaitable[T]],
        on_commit: Callable[[float], None] | None = None,
    ) -> T:
        """Run ``body`` in one transaction on a pooled connection, within the deadline;
        re-run it on a deadlock while time is left. ``on_commit`` gets the seconds from
        ``BEGIN`` returned to ``COMMIT`` returned of the transaction that committed."""
        deadline = deadline_for(self.deadline)
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            try:
                return await self._transaction_once(body, deadline, on_commit)
            except TRANSIENT:
                pause = 0.005 * 2**attempt
                if attempt == TRANSIENT_RETRIES or seconds_left(deadline) <= pause:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _transaction_once(
        self,
        body: Callable[[Connection], Awaitable[T]],
        deadline: float,
        on_commit: Callable[[float], None] | None,
    ) -> T:
        async with self.acquire(deadline) as conn:
            try:
                async with asyncio.timeout(seconds_left(deadline)):
                    left_ms = max(1, int(seconds_left(deadline) * 1000))
                    await conn.execute(BEGIN_WITHIN.format(ms=left_ms))
                    began = time.perf_counter()
                    result = await body(conn)
                if seconds_left(deadline) <= 0:
                    raise exceeded()
            except BaseException as exc:
                # Not committed: roll back (a broken connection is discarded by the pool,
                # which ends its session, and with it the transaction).
                if not conn.is_closed():
                    with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
                        await conn.execute("ROLLBACK")
                if isinstance(exc, (TimeoutError, *TIMED_OUT)):
                    raise exceeded() from exc
                raise
            await commit(conn)
            if on_commit is not None:
                on_commit(time.perf_counter() - began)
            return result

    async def read(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """Single statements outside an explicit transaction (each one is atomic), within the
        deadline. Only reads answer requests; the writes done here (tools, outbox marks)
        are idempotent, so a timeout that cannot tell whether they applied is harmless."""
        deadline = deadline_for(self.deadline)
        try:
            async with self.acquire(deadline) as conn, asyncio.timeout(seconds_left(deadline)):
                return await body(conn)
        except TimeoutError as exc:
            raise exceeded() from exc

    async def close(self) -> None:
        self.closed = True
        await self._pool.close()


def exceeded() -> DeadlineExceeded:
    """What a store operation that ran out of time raises."""
    return DeadlineExceeded("PostgreSQL store: not done within the deadline; nothing was committed")


async def commit(conn: Connection) -> None:
    """Send ``COMMIT`` and wait for its answer, even if the caller is cancelled meanwhile."""
    commit = asyncio.ensure_future(conn.execute("COMMIT"))
    try:
        await asyncio.shield(commit)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await commit
        raise
    except UNAVAILABLE as exc:
        raise OutcomeUnknown(
            f"PostgreSQL connection lost during COMMIT ({exc}): the outcome is unknown"
        ) from exc


class _Acquired:
    """``pool.acquire()`` whose failures to reach the server are ``StoreUnavailable``.

    Only errors raised while acquiring or while the body talks to the server are
    translated; domain errors and constraint violations pass unchanged.
    """

    def __init__(self, context: PoolAcquireContext[asyncpg.Record]) -> None:
        self._context = context

    async def __aenter__(self) -> Connection:
        try:
            return await self._context.__aenter__()
        except TimeoutError as exc:  # no pooled connection freed up in time
            raise exceeded() from exc
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL store unavailable: {exc}") from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._context.__aexit__(exc_type, exc, tb)
        if isinstance(exc, TimeoutError):
            raise exceeded() from exc
        if isinstance(exc, UNAVAILABLE):
            raise StoreUnavailable(f"PostgreSQL store unavailable: {exc}") from exc


async def _create_schema(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.SCHEMA_LOCK)
    version = None
    if await conn.fetchval("SELECT to_regclass('orderflow_schema') IS NOT NULL"):
        version = await conn.fetchval("SELECT max(version) FROM orderflow_schema")
    if version is not None and version > sql.SCHEMA_VERSION:
        raise StoreUnavailable(
            f"database schema version {version} is newer than this code ({sql.SCHEMA_VERSION})"
        )
    await conn.execute(sql.SCHEMA)
    if version is None:
        await conn.execute("INSERT INTO orderflow_schema (version) VALUES ($1)", sql.SCHEMA_VERSION)
