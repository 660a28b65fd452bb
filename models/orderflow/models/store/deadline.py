"""How long a store operation may take: one deadline, shared by every step of a request.

Why a deadline and not per-step timeouts: an HTTP client gets one answer, and
that answer must come before the server's response timeout *and* must be true.
If the lock wait, the pool acquire and the statements each had their own
timeout, their sum could outlive the answer, and a transaction still running
after a 503 could commit. So the caller fixes one instant (``within(seconds)``)
and every step of the store takes what is *left* of it: SQLite's busy timeout,
PostgreSQL's ``lock_timeout``/``statement_timeout`` and pool acquire, MongoDB's
client-side operation timeout. When it has passed, the transaction is abandoned
(rolled back, never committed later) and the store raises ``DeadlineExceeded``.

The instant lives in a context variable, so it flows from the request handler
through the use case into the store without widening the ``Store`` protocol,
and into the SQLite store's threads (which copy the caller's context). A store
operation called outside any ``within`` block gets the store's own default
budget (``deadline`` given to ``open_store``), counted from the call.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from orderflow.models.store.errors import StoreUnavailable

DEFAULT_DEADLINE_SECONDS = 10.0
"""A store's budget per operation when its opener gives none (tools, tests)."""

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orderflow_store_deadline", default=None
)


class DeadlineExceeded(StoreUnavailable):
    """The store did not finish within the deadline; nothing of the operation was committed."""


@contextmanager
def within(seconds: float) -> Iterator[float]:
    """Every store operation in this block must finish within ``seconds`` from now.

    Nested blocks can only shorten the deadline, never extend it. Yields the
    deadline (``time.monotonic()`` seconds).
    """
    if seconds <= 0:
        raise ValueError("a deadline must be positive")
    current = _deadline.get()
    instant = time.monotonic() + seconds
    if current is not None:
        instant = min(instant, current)
    token = _deadline.set(instant)
    try:
        yield instant
    finally:
        _deadline.reset(token)


def deadline_for(default_seconds: float) -> float:
    """The instant the current operation must finish by: the caller's, or ``default_seconds``
    from now (whichever is sooner)."""
    own = time.monotonic() + default_seconds
    current = _deadline.get()
    return own if current is None else min(own, current)


def current_deadline() -> float | None:
    """The caller's deadline, if any (``time.monotonic()`` seconds)."""
    return _deadline.get()


def seconds_left(deadline: float) -> float:
    """What is left until ``deadline``: zero or more."""
    return max(0.0, deadline - time.monotonic())
