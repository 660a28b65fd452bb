"""Orders from the console: the recent ones, one by id, and moving one on by hand.

``GET /api/v1/ops/orders?limit=N`` lists the newest orders (the store's
``recent_orders``), each with ``next_step``: the step an operator may take now, or
null (a simulated or delivered order, or one whose previous step is still being
applied); ``GET .../orders/{id}`` is the same document as the public
``GET /api/v1/orders/{id}``, here too so that the console needs one token for
everything. ``POST .../orders/{id}/advance`` moves an order placed with
``"simulate": false`` one step through its lifecycle by publishing the report the
simulator would (:mod:`orderflow.agents.manual_steps`): the answer is 202, because
the orders and delivery services apply it as they apply the simulator's. A body
``{"status": "<step>"}`` names the step the operator saw; if the order has moved
since, the call is refused (409 ``stale-step``) rather than taking the step after.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from sanic import HTTPResponse, Request, Sanic
from sanic.response import json

from orderflow.agents.manual_steps import StepRefused, advance, available_step, next_step
from orderflow.models.documents import ENTITY_ID_PATTERN
from orderflow.models.store import MAX_RECENT_ORDERS
from orderflow.runtime.context import current_correlation_id
from orderflow.web.ops.auth import audit
from orderflow.web.ops.bodies import AdvanceBody, read_body, read_count
from orderflow.web.problems import problem, problem_type, request_ext

BASE = "/api/v1/ops/orders"
ONE = f"{BASE}/<order_id:{ENTITY_ID_PATTERN.strip('^$')}>"
DEFAULT_RECENT = 20

REFUSAL_TYPES = {
    "simulated": ("Order is simulated", "order-simulated"),
    "delivered": ("Order is delivered", "order-delivered"),
    "cancelled": ("Order is cancelled", "order-cancelled"),
    "pending": ("Previous step still in progress", "step-pending"),
    "stale": ("Order moved since you looked", "stale-step"),
}


def not_found(request: Request, order_id: str) -> HTTPResponse:
    return problem(
        404, "No such order", f"There is no order {order_id}.",
        problem_type("order-not-found"), **request_ext(request),
    )  # fmt: skip


async def recent_orders(request: Request) -> HTTPResponse:
    limit = read_count(request, "limit", DEFAULT_RECENT, MAX_RECENT_ORDERS)
    if isinstance(limit, HTTPResponse):
        return limit
    orders = await request.app.ctx.store.recent_orders(limit)
    return json(
        {
            "orders": [
                {**order.model_dump(mode="json"), "next_step": available_step(order)}
                for order in orders
            ]
        }
    )


async def find_order(request: Request, order_id: str) -> HTTPResponse:
    order = await request.app.ctx.store.get_order(order_id)
    if order is None:
        return not_found(request, order_id)
    return json(order.model_dump(mode="json"))


async def advance_order(request: Request, order_id: str) -> HTTPResponse:
    body = read_body(request, AdvanceBody, empty_ok=True)
    if isinstance(body, HTTPResponse):
        return body
    order = await request.app.ctx.store.get_order(order_id)
    if order is None:
        return not_found(request, order_id)
    try:
        taken = await advance(
            request.app.ctx.publisher,
            order,
            expected=body.status,
            correlation_id=current_correlation_id(),
        )
    except StepRefused as refused:
        title, kind = REFUSAL_TYPES[refused.reason]
        return problem(
            409, title, refused.detail, problem_type(kind),
            status_now=order.status, **request_ext(request),
        )  # fmt: skip
    except (RedisError, OSError):
        # Not "failed": a reply lost after the append looks the same as a refused
        # connection. Re-sending the same step is safe (monotonic; stale-step if taken).
        step = next_step(order)
        audit(request, "order.advance", order_id=order_id, status=step, outcome="unknown")
        return problem(
            503, "Step outcome unknown",
            f"The broker did not confirm the step to {step}: it may or may not have been "
            "reported. Reload the order; if it has not moved, send the same step again "
            "(a repeated step changes nothing).",
            problem_type("step-outcome-unknown"), headers={"Retry-After": "1"},
            step=step, **request_ext(request),
        )  # fmt: skip
    audit(request, "order.advance", order_id=order_id, status=taken.step)
    return json(
        {
            "order_id": taken.order_id,
            "status": taken.step,
            "stream": taken.stream,
            "event_id": taken.event_id,
        },
        status=202,
    )


def register(app: Sanic) -> None:
    app.add_route(recent_orders, BASE, methods=["GET"], name="ops_orders")
    app.add_route(find_order, ONE, methods=["GET"], name="ops_order")
    app.add_route(advance_order, ONE + "/advance", methods=["POST"], name="ops_order_advance")
