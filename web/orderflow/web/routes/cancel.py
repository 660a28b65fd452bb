"""``POST /api/v1/orders/<order_id>/cancel``: the customer cancels before the kitchen starts.

* ``created`` or ``confirmed``: one store transaction sets ``cancelled``, gives every
  line's stock back and writes ``order.cancelled.v1`` and ``stock.changed.v1`` to the
  outbox (:mod:`orderflow.agents.cancellation`); 200 with the order as it now is.
* Already cancelled: the very same 200 and body, nothing written (no second stock
  return) -- so a client that lost the first answer just sends it again. That is why
  the route needs no ``Idempotency-Key``; and it is not rate-limited like placing an
  order, because it reserves nothing: an order can be cancelled once.
* ``preparing`` or later: 409 ``order-not-cancellable`` naming the current status
  (``status_now``); nothing changed.
* Unknown id: 404 ``order-not-found``; a malformed id is a 404 too, as for ``GET``.
* Store not done in time: 503 ``store-unavailable`` (the transaction was abandoned:
  nothing was cancelled); connection lost while committing: 503
  ``cancel-outcome-unknown`` -- sending the cancel again tells, harmlessly.
"""

from __future__ import annotations

import logging

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi

from orderflow.agents.cancellation import cancel_order
from orderflow.models.documents import CANCELLABLE_STATUSES
from orderflow.models.store import NotCancellable, OrderNotFound, OutcomeUnknown, StoreUnavailable
from orderflow.web.openapi import ORDER_SCHEMA, json_content, order_id_parameter, problem_content
from orderflow.web.problems import problem, problem_type, request_ext
from orderflow.web.store_problems import RETRY_AFTER_SECONDS, store_unavailable
from orderflow.web.validation import is_plausible_order_id

log = logging.getLogger(__name__)

ROUTE = "/api/v1/orders/<order_id:str>/cancel"


def not_found(request: Request, detail: str) -> HTTPResponse:
    return problem(
        404, "Order not found", detail, problem_type("order-not-found"), **request_ext(request)
    )


async def cancel(request: Request, order_id: str) -> HTTPResponse:
    settings = request.app.ctx.settings
    if not is_plausible_order_id(order_id):
        return not_found(
            request, "No order has this id: order ids are 32 lowercase hexadecimal digits."
        )
    try:
        result = await cancel_order(
            request.app.ctx.store,
            request.app.ctx.publisher,
            order_id,
            deadline=settings.store_deadline_seconds,
            marks=request.app.ctx.published_marks,
        )
    except OrderNotFound:
        return not_found(request, f"No order with id {order_id}.")
    except NotCancellable as exc:
        status = exc.status.replace("_", " ")
        return problem(
            409,
            "Order can no longer be cancelled",
            f"The order is already {status}: once the kitchen is preparing it, it can no "
            f"longer be cancelled (only while {' or '.join(CANCELLABLE_STATUSES)}). "
            "Nothing was changed.",
            problem_type("order-not-cancellable"),
            status_now=exc.status,
            **request_ext(request),
        )
    except OutcomeUnknown as exc:
        log.warning("cancel outcome unknown for order %s: %s", order_id, exc)
        return problem(
            503,
            "Cancel outcome unknown",
            "The connection to the order store broke while the cancel was being committed, "
            "so the order may or may not be cancelled. Send the cancel again: a repeated "
            "cancel changes nothing and answers with the order as it is.",
            problem_type("cancel-outcome-unknown"),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            **request_ext(request),
        )
    except StoreUnavailable as exc:
        log.warning("store unavailable while cancelling order %s: %s", order_id, exc)
        return store_unavailable(
            request,
            f"The order store did not finish within {settings.store_deadline_seconds:g} s or is "
            "unreachable; nothing was cancelled and nothing will be. Retry shortly.",
        )
    return json(result.order.model_dump(mode="json"))


def register(app: Sanic) -> None:
    """Add the route, documented in OpenAPI."""

    async def cancel_route(request: Request, order_id: str) -> HTTPResponse:
        return await cancel(request, order_id)

    documented = openapi.definition(
        operation="cancelOrder",
        summary="Cancel an order",
        description=(
            "Allowed while the order is `created` or `confirmed`: in one transaction the order "
            "becomes `cancelled` (terminal: it never moves again) and every line's stock goes "
            "back on the menu. Repeating the cancel returns the same 200 and changes nothing. "
            "From `preparing` on: 409 `order-not-cancellable` with `status_now`."
        ),
        tag="orders",
        parameter=[order_id_parameter()],
    )(cancel_route)
    for status, description in (
        (404, "No such order (or a malformed id)"),
        (409, "Too late: the order is preparing or later (status_now says which)"),
        (503, "Store not available in time (nothing cancelled), or outcome unknown"),
    ):
        documented = openapi.response(status, problem_content(), description)(documented)
    documented = openapi.response(
        200, json_content(ORDER_SCHEMA), "The cancelled order (the same on a repeat)"
    )(documented)
    app.add_route(documented, ROUTE, methods=["POST"], name="orders_cancel")
