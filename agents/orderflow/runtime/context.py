"""Correlation that follows an event through every service.

A ``ContextVar`` holds the *scope* the current code runs in: the event being
handled (an :class:`~orderflow.runtime.event.Event`) or an explicit
``with correlation(...)`` block. Sends read it so that a follow-up event keeps
the correlation id and names the handled event as its cause; log formatters
read it so that every line carries the correlation id. ContextVars (not
globals) because many handlers run concurrently in one event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Scope(Protocol):
    """What the runtime needs to know about "the event we are working for"."""

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def child_causation_id(self) -> str | None:
        """The causation id that events sent from this scope get."""
        ...

    @property
    def event_id(self) -> str | None: ...

    @property
    def event_type(self) -> str | None: ...

    def child_event_id(self) -> str | None:
        """The event id for the next send from this scope, or ``None`` for a random one
        (see :mod:`orderflow.runtime.send_ids`). Each call is the next send."""
        ...


class CorrelationScope:
    """An explicit scope (``with correlation(cid): ...``), e.g. an HTTP request."""

    __slots__ = ("causation_id", "correlation_id")

    def __init__(self, correlation_id: str | None, causation_id: str | None = None) -> None:
        self.correlation_id = correlation_id
        self.causation_id = causation_id

    @property
    def child_causation_id(self) -> str | None:
        return self.causation_id

    @property
    def event_id(self) -> str | None:
        return None

    @property
    def event_type(self) -> str | None:
        return None

    def child_event_id(self) -> str | None:
        return None  # not handling an input: sends keep random ids


current_scope: ContextVar[Scope | None] = ContextVar("orderflow_scope", default=None)

current_service: ContextVar[str | None] = ContextVar("orderflow_service", default=None)
"""The service (the :class:`~orderflow.runtime.App`'s name) the current code works for.

Why a ContextVar: a worker process may run several services' Apps in one event loop
(``orderflow worker orders delivery``, the demo's ``paired`` layout), and a log line or
a trace span must still name the service that wrote it, not the process. ``App.start``
sets it while it creates its agents' and timers' tasks, so each task (and each thread
that copies a task's context, as the stores' threads do) inherits its own App's name.
``None`` outside any App: the process's name (the log handler's) applies."""


def current_correlation_id() -> str | None:
    scope = current_scope.get()
    return scope.correlation_id if scope is not None else None


@contextmanager
def correlation(correlation_id: str | None, causation_id: str | None = None) -> Iterator[Scope]:
    """Run a block inside a correlation (sends inherit it, log lines carry it)."""
    scope = CorrelationScope(correlation_id, causation_id)
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


@contextmanager
def serving(service: str) -> Iterator[None]:
    """Run a block (and every task it creates) as ``service``: see :data:`current_service`."""
    token = current_service.set(service)
    try:
        yield
    finally:
        current_service.reset(token)


def enter_scope(scope: Scope | None) -> None:
    """Set the scope for the rest of the current task (e.g. one HTTP request's task),
    where a ``with correlation(...)`` block would not span the work."""
    current_scope.set(scope)
