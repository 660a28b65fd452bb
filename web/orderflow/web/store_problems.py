"""The answers a request gets when the store cannot serve it in time.

Two different statements, because clients act on them differently:

* ``store-unavailable`` (503, ``Retry-After``): the store did not finish within
  ``ORDERFLOW_STORE_DEADLINE_SECONDS`` or cannot be reached. For an order this
  means *nothing was ordered and nothing will be*: the store abandoned the
  transaction before this answer was built (see
  :mod:`orderflow.models.store.deadline`). Retrying is safe.
* ``order-outcome-unknown`` (503, ``Retry-After``): the connection to the store
  broke while it was committing, so the order may exist. Only a retry with the
  same ``Idempotency-Key`` tells (201 with ``Idempotency-Replayed: true`` if it
  does; a new order if it does not). Never reported as "nothing happened".

Reads (menu, order lookups) that hit the deadline get ``store-unavailable``
through the exception handler installed here.
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic

from orderflow.models.store import OutcomeUnknown, StoreUnavailable
from orderflow.web.problems import problem, problem_type, request_ext

RETRY_AFTER_SECONDS = 1
"""What a 503 asks clients to wait: a lock held by another writer is usually brief."""


def store_unavailable(request: Request, detail: str) -> HTTPResponse:
    return problem(
        503,
        "Store unavailable",
        detail,
        problem_type("store-unavailable"),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        **request_ext(request),
    )


def order_outcome_unknown(request: Request) -> HTTPResponse:
    return problem(
        503,
        "Order outcome unknown",
        "The connection to the order store broke while the order was being committed, so "
        "it may or may not exist. Retry with the same Idempotency-Key: you get the order if "
        "it was placed, and a new attempt if it was not.",
        problem_type("order-outcome-unknown"),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        **request_ext(request),
    )


def install(app: Sanic) -> None:
    """Answer a read that the store could not serve in time with ``store-unavailable``."""

    async def handle(request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, OutcomeUnknown):
            return order_outcome_unknown(request)
        return store_unavailable(
            request, "The store did not answer in time or is unreachable. Retry shortly."
        )

    app.error_handler.add(StoreUnavailable, handle)
