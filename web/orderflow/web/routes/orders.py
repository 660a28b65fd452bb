"""``POST /api/v1/orders`` and ``GET /api/v1/orders/<order_id>``.

Placing an order:

1. the content type must be JSON (415 otherwise); Sanic already refused
   bodies over ``ORDERFLOW_MAX_BODY_BYTES`` (413);
2. the body is validated strictly (400 not JSON, 422 not a valid order);
3. ``orderflow.agents.placement.place_order`` runs the store transaction (stock, order,
   outbox); the store's refusals become 404 (unknown item), 409 (out of stock, naming
   the item and what is left) or 422 (an ``Idempotency-Key`` reused for a different
   body);
4. 201 with ``Location`` and the order as created, while the outbox is published
   (started before the answer, finished after it: :mod:`orderflow.web.after_answer`).

The whole placement has one deadline (``ORDERFLOW_STORE_DEADLINE_SECONDS``): past it
the store has abandoned the transaction and the answer is 503 ``store-unavailable``
with ``Retry-After`` -- nothing was ordered, and nothing will be
(:mod:`orderflow.web.store_problems`). A client that disconnects before its answer
cancels the handler, and with it the transaction unless its commit had begun: it
may or may not have an order, and a retry with the same ``Idempotency-Key`` says
which (the first order, or a new one -- never two).

With an ``Idempotency-Key``, a retry of the same request gets the same 201 and
the same body (the order as it was created, whatever happened to it since) and
``Idempotency-Replayed: true``; no second order, no second stock reservation.

A malformed order id in ``GET /api/v1/orders/<id>`` is a 404 like an unknown
one — an id that cannot exist names no resource — with a detail that says the
shape was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import String

from orderflow.agents.placement import place_order
from orderflow.models.documents import Order, OrderLineRequest
from orderflow.models.store import (
    IdempotencyKeyReused,
    OutcomeUnknown,
    OutOfStock,
    StoreUnavailable,
    UnknownItem,
)
from orderflow.web.metrics import ORDERS_PLACED, ORDERS_REJECTED
from orderflow.web.openapi import (
    ORDER_SCHEMA,
    document_response_extras,
    json_content,
    order_id_parameter,
    problem_content,
)
from orderflow.web.problems import problem, problem_type, request_ext
from orderflow.web.store_problems import order_outcome_unknown, store_unavailable
from orderflow.web.validation import (
    InvalidBody,
    Limits,
    MalformedJSON,
    is_plausible_order_id,
    order_body_schema,
    parse_order_body,
)

log = logging.getLogger(__name__)

ORDERS_PATH = "/api/v1/orders"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def valid_idempotency_key(key: str) -> bool:
    return 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and all("\x21" <= ch <= "\x7e" for ch in key)


def created_view(order: Order) -> dict[str, Any]:
    """The order as it was at creation: what the first 201 said, and what a replay repeats."""
    body = order.model_dump(mode="json")
    first = body["history"][:1]
    if first:
        body["status"] = first[0]["status"]
    body["history"] = first
    body["updated_at"] = body["created_at"]
    body["delivery"] = None
    return body


def out_of_stock_detail(exc: OutOfStock) -> str:
    """Plain words for a person: a sold-out item is "sold out", not "only 0 left"."""
    if exc.available <= 0:
        shortage = f"'{exc.name}' ({exc.item_id}) is sold out"
    else:
        shortage = f"Only {exc.available} of '{exc.name}' ({exc.item_id}) left"
    return f"{shortage}; {exc.requested} requested. Nothing was reserved."


def _reject(reason: str, response: HTTPResponse) -> HTTPResponse:
    ORDERS_REJECTED.labels(reason=reason).inc()
    return response


async def create_order(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    ctx = request_ext(request)
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        return _reject(
            "invalid_body",
            problem(
                415,
                detail=(
                    f"Send the order as application/json, not {content_type or 'no content type'}."
                ),
                **ctx,
            ),
        )
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_idempotency_key(key):
        return _reject(
            "invalid_body",
            problem(
                400,
                "Invalid Idempotency-Key",
                f"The {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} "
                "visible ASCII characters.",
                problem_type("invalid-idempotency-key"),
                **ctx,
            ),
        )
    limits = Limits(settings.max_order_lines, settings.max_line_quantity)
    try:
        body = parse_order_body(request.body or b"", limits)
    except MalformedJSON as exc:
        return _reject(
            "invalid_body",
            problem(400, "Malformed JSON", exc.detail, problem_type("malformed-json"), **ctx),
        )
    except InvalidBody as exc:
        return _reject(
            "invalid_body",
            problem(
                422,
                "Invalid order",
                exc.detail,
                problem_type("invalid-order"),
                errors=exc.errors,
                **ctx,
            ),
        )
    lines = [OrderLineRequest(item_id=line.item_id, quantity=line.quantity) for line in body.lines]
    try:
        result = await place_order(
            request.app.ctx.store,
            request.app.ctx.publisher,
            lines,
            idempotency_key=key,
            request_hash=body.request_hash() if key is not None else None,
            deadline=settings.store_deadline_seconds,
            simulate=body.simulate,
            customer=None if body.customer is None else body.customer.to_customer(),
            marks=request.app.ctx.published_marks,
            publish_after=request.app.ctx.after_answer.spawn,
        )
    except OutOfStock as exc:
        return _reject(
            "out_of_stock",
            problem(
                409,
                "Out of stock",
                out_of_stock_detail(exc),
                problem_type("out-of-stock"),
                item_id=exc.item_id,
                name=exc.name,
                requested=exc.requested,
                available=exc.available,
                **ctx,
            ),
        )
    except UnknownItem as exc:
        return _reject(
            "unknown_item",
            problem(
                404,
                "Unknown menu item",
                f"No menu item with id {', '.join(exc.item_ids)}; see GET /api/v1/menu.",
                problem_type("unknown-item"),
                item_ids=exc.item_ids,
                **ctx,
            ),
        )
    except IdempotencyKeyReused as exc:
        return _reject(
            "idempotency_key_reused",
            problem(
                422,
                "Idempotency-Key reused",
                f"The {IDEMPOTENCY_HEADER} '{exc.key}' was already used for a different "
                "order; use a new key for a new order.",
                problem_type("idempotency-key-reused"),
                **ctx,
            ),
        )
    except OutcomeUnknown as exc:
        log.warning("order outcome unknown: %s", exc)
        return order_outcome_unknown(request)
    except StoreUnavailable as exc:
        # The store abandoned the transaction before raising: nothing can commit later.
        log.warning("store unavailable while placing an order: %s", exc)
        return store_unavailable(
            request,
            f"The order store did not finish within {settings.store_deadline_seconds:g} s or is "
            "unreachable; nothing was ordered and nothing will be. Retry shortly.",
        )
    headers = {"Location": f"{ORDERS_PATH}/{result.order.id}"}
    if result.replayed:
        headers[REPLAYED_HEADER] = "true"
    else:
        ORDERS_PLACED.inc()
    return json(created_view(result.order), status=201, headers=headers)


async def get_order(request: Request, order_id: str) -> HTTPResponse:
    ctx = request_ext(request)
    if not is_plausible_order_id(order_id):
        return problem(
            404,
            "Order not found",
            "No order has this id: order ids are 32 lowercase hexadecimal digits.",
            problem_type("order-not-found"),
            **ctx,
        )
    order = await request.app.ctx.store.get_order(order_id)
    if order is None:
        return problem(
            404,
            "Order not found",
            f"No order with id {order_id}.",
            problem_type("order-not-found"),
            **ctx,
        )
    return json(order.model_dump(mode="json"))


def register(app: Sanic) -> None:
    """Add the routes, documenting the body with this deployment's limits."""
    settings = app.ctx.settings
    limits = Limits(settings.max_order_lines, settings.max_line_quantity)

    async def create_order_route(request: Request) -> HTTPResponse:
        return await create_order(request)

    async def get_order_route(request: Request, order_id: str) -> HTTPResponse:
        return await get_order(request, order_id)

    create_documented = openapi.definition(
        operation="placeOrder",
        summary="Place an order",
        description=(
            "Reserves the stock of every line and creates the order atomically: all lines "
            "or nothing. Send an Idempotency-Key to make retries safe. With "
            '"simulate": false the order waits at created for an operator.'
        ),
        tag="orders",
        body={"application/json": {"schema": order_body_schema(limits)}},
        parameter=[
            {
                "name": IDEMPOTENCY_HEADER,
                "location": "header",
                "schema": String(minLength=1, maxLength=MAX_IDEMPOTENCY_KEY_LENGTH),
                "description": "Retries with the same key and body return the first result.",
                "required": False,
            }
        ],
    )(create_order_route)
    for status, description in (
        (400, "Body is not JSON, or a bad Idempotency-Key"),
        (404, "Unknown menu item"),
        (409, "Out of stock (names the item and what is left)"),
        (413, "Body too large"),
        (415, "Content type is not JSON"),
        (422, "Body is not a valid order, or Idempotency-Key reused for another body"),
        (
            503,
            "Store not available in time: nothing ordered (store-unavailable), or outcome unknown",
        ),
    ):
        create_documented = openapi.response(status, problem_content(), description)(
            create_documented
        )
    create_documented = openapi.response(201, json_content(ORDER_SCHEMA), "Order created")(
        create_documented
    )
    document_response_extras(
        create_documented,
        201,
        headers={"Location": {"schema": {"type": "string"}, "description": "URL of the order"}},
        links={
            "GetOrder": {
                "operationId": "getOrder",
                "parameters": {"order_id": "$response.body#/id"},
                "description": "The order just created.",
            }
        },
    )

    get_documented = openapi.definition(
        operation="getOrder",
        summary="Get an order",
        description="The order with its status history and its delivery (once it has one).",
        tag="orders",
        parameter=[order_id_parameter()],
    )(get_order_route)
    get_documented = openapi.response(404, problem_content(), "No such order")(get_documented)
    get_documented = openapi.response(503, problem_content(), "Store not available in time")(
        get_documented
    )
    get_documented = openapi.response(200, json_content(ORDER_SCHEMA), "The order")(get_documented)

    app.add_route(create_documented, ORDERS_PATH, methods=["POST"], name="orders_create")
    app.add_route(
        get_documented, ORDERS_PATH + "/<order_id:str>", methods=["GET"], name="orders_get"
    )
