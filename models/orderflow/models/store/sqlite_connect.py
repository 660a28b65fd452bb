"""How the SQLite store opens its connections, and the store URL options that shape them.

Its own module because this is the store's contract with the file and the
``sqlite3`` library rather than with orders: the pragmas every connection gets
(WAL, ``synchronous``, foreign keys; ``query_only`` on readers), that the writer
connection creates the schema when it opens, and which ``?option=`` of a
``sqlite:///`` URL turns what on or off. The store
(:mod:`~orderflow.models.store.sqlite`) hands :func:`connect_writer` and
:func:`connect_reader` to its threads (:mod:`~orderflow.models.store.sqlite_threads`),
which call them on the thread that will own the connection.

**WAL** lets readers proceed while a writer commits; ``synchronous=FULL`` makes a
committed order durable before its events are published.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypedDict
from urllib.parse import parse_qs, urlsplit

from orderflow.models.store.sqlite_job import Job, retry_busy, transaction
from orderflow.models.store.sqlite_schema import create_schema


def shareable_path(path: str | Path) -> str:
    """``path`` as the store's connections open it; ``ValueError`` for an in-memory
    database, which its writer and reader connections could not share."""
    text = str(path)
    if text == ":memory:" or text.startswith("file::memory:"):
        raise ValueError("an in-memory database cannot be shared by the store's connections")
    return text


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # check_same_thread=False: the caller may interrupt() it, and close() closes it,
    # from other threads; statements only ever run on the connection's own thread.
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    return conn


def connect_writer(
    path: str,
    job: Job,
    busy_timeout: float,
    synchronous: Literal["FULL", "NORMAL"],
    on_busy: Callable[[], None],
) -> sqlite3.Connection:
    """Runs on the writer thread: the connection never leaves it. WAL, ``synchronous``,
    foreign keys, then the schema (idempotent, in ``BEGIN IMMEDIATE``) within ``job``'s
    deadline; ``on_busy`` counts each retry of a locked file."""
    conn = _connect(path, busy_timeout)
    try:
        retry_busy(job, lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), on_busy)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        transaction(conn, job, create_schema, "IMMEDIATE", busy_timeout, on_busy)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Runs on a reader thread; ``query_only``: a read can never write by mistake."""
    conn = _connect(path, busy_timeout)
    conn.execute("PRAGMA query_only=ON")
    return conn


# ------------------------------------------------------------- the store URL


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel/path.db`` -> ``rel/path.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(f"sqlite URL must look like sqlite:///path.db, got {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValueError(f"sqlite URL has no path: {url!r}")
    return path


GROUP_COMMIT_OPTION = "group_commit"
"""The store URL's query option for group commit: ``on`` (default) or ``off``."""

WRITER_LOCK_OPTION = "writer_lock"
"""The store URL's query option for the cross-process writer lock (``flock`` on
``<db>-writer.lock``): ``on`` (default) or ``off``."""


def _switch_from_url(url: str, option: str) -> bool:
    values = parse_qs(urlsplit(url).query).get(option, ["on"])
    value = values[-1].lower()
    if value not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f"{option} must be on or off, got {value!r} in {url!r}")
    return value in ("on", "true", "1")


def group_commit_from_url(url: str) -> bool:
    """``sqlite:///x.db?group_commit=off`` -> ``False``. An option in the URL rather than a
    setting of its own: the store URL is already what every process is given
    (``ORDERFLOW_STORE_URL``), so the escape hatch reaches them all with no new wiring."""
    return _switch_from_url(url, GROUP_COMMIT_OPTION)


def writer_lock_from_url(url: str) -> bool:
    """``sqlite:///x.db?writer_lock=off`` -> ``False`` (in the URL for the same reason as
    ``group_commit``). Every process writing a file should agree: one without the lock
    is still safe (SQLite's own lock serialises it) but is served by the sleeping busy
    handler, and so are the others while it holds the file."""
    return _switch_from_url(url, WRITER_LOCK_OPTION)


SYNCHRONOUS_OPTION = "synchronous"
"""The store URL's query option for SQLite's ``PRAGMA synchronous`` of the writer
connection: ``full`` (default) or ``normal``."""


def synchronous_from_url(url: str) -> Literal["FULL", "NORMAL"]:
    """``sqlite:///x.db?synchronous=normal`` -> ``"NORMAL"``; default ``"FULL"``.

    ``FULL`` (the default) syncs the write-ahead log at every ``COMMIT``: a committed
    order survives a power cut or a kernel crash. ``NORMAL`` in WAL mode syncs only at
    checkpoints: a commit survives the crash of any process (the log is in the OS's
    page cache), but the last commits before a power cut or a kernel crash may be lost
    -- and their events may already be on Redis. It takes the fsync (~1.3 ms here) off
    every write; a choice for a deployment whose disk or host makes that trade, never a
    silent default."""
    values = parse_qs(urlsplit(url).query).get(SYNCHRONOUS_OPTION, ["full"])
    value = values[-1].lower()
    if value == "full":
        return "FULL"
    if value == "normal":
        return "NORMAL"
    raise ValueError(f"{SYNCHRONOUS_OPTION} must be full or normal, got {value!r} in {url!r}")


class UrlOptions(TypedDict):
    """What a store URL's query sets, named as :meth:`SqliteStore.open
    <orderflow.models.store.sqlite.SqliteStore.open>` takes it."""

    group_commit: bool
    writer_lock: bool
    synchronous: Literal["FULL", "NORMAL"]


def url_options(url: str) -> UrlOptions:
    """``?group_commit=``, ``?writer_lock=`` and ``?synchronous=`` of ``url``, defaults
    for those it leaves out; ``ValueError`` for a value none of them accepts."""
    return UrlOptions(
        group_commit=group_commit_from_url(url),
        writer_lock=writer_lock_from_url(url),
        synchronous=synchronous_from_url(url),
    )
