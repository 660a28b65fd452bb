"""Orders from the console: find one by id, with its delivery.

The same document as the public ``GET /api/v1/orders/{id}``; it lives here too so
that the console needs one token for everything and so that what only operators
may see (and do) to an order has its place.
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json

from orderflow.models.documents import ENTITY_ID_PATTERN
from orderflow.web.problems import problem, problem_type, request_ext

ONE = f"/api/v1/ops/orders/<order_id:{ENTITY_ID_PATTERN.strip('^$')}>"


async def find_order(request: Request, order_id: str) -> HTTPResponse:
    order = await request.app.ctx.store.get_order(order_id)
    if order is None:
        return problem(
            404, "No such order", f"There is no order {order_id}.",
            problem_type("order-not-found"), **request_ext(request),
        )  # fmt: skip
    return json(order.model_dump(mode="json"))


def register(app: Sanic) -> None:
    app.add_route(find_order, ONE, methods=["GET"], name="ops_order")
