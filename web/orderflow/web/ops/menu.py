"""Stock from the console: ``GET /api/v1/ops/menu``, ``PUT .../menu/<item>/stock``,
``POST .../menu/refill`` (the ``orderflow refill`` command over HTTP).

Setting a stock level is absolute (``{"stock": 12}``), not a delta: a retried PUT
lands on the same value, so an operator whose first click timed out can click
again without doubling anything.
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json

from orderflow.agents.stock_events import announce_stock_change
from orderflow.models.documents import MENU_ITEM_ID_PATTERN
from orderflow.models.store import UnknownItem
from orderflow.web.ops.auth import audit
from orderflow.web.ops.bodies import RefillBody, StockBody, read_body
from orderflow.web.problems import problem, problem_type, request_ext

ITEM = f"/api/v1/ops/menu/<item_id:{MENU_ITEM_ID_PATTERN.strip('^$')}>/stock"


async def list_menu(request: Request) -> HTTPResponse:
    items = await request.app.ctx.store.list_menu()
    return json({"items": [item.model_dump(mode="json") for item in items]})


async def set_stock(request: Request, item_id: str) -> HTTPResponse:
    body = read_body(request, StockBody)
    if isinstance(body, HTTPResponse):
        return body
    try:
        await request.app.ctx.store.set_stock(item_id, body.stock)
    except UnknownItem:
        return problem(
            404, "No such item", f"There is no menu item {item_id!r}.",
            problem_type("unknown-item"), **request_ext(request),
        )  # fmt: skip
    audit(request, "menu.set-stock", item_id=item_id, stock=body.stock)
    await announce_stock_change(request.app.ctx.publisher, [item_id], source="ops")  # live pages
    return json({"item_id": item_id, "stock": body.stock})


async def refill(request: Request) -> HTTPResponse:
    body = read_body(request, RefillBody, empty_ok=True)
    if isinstance(body, HTTPResponse):
        return body
    changed = await request.app.ctx.store.refill(body.stock)
    audit(request, "menu.refill", stock=body.stock if body.stock is not None else "seeded")
    await announce_stock_change(request.app.ctx.publisher, source="ops")  # live pages
    return json({"refilled": changed})


def register(app: Sanic) -> None:
    app.add_route(list_menu, "/api/v1/ops/menu", methods=["GET"], name="ops_menu")
    app.add_route(set_stock, ITEM, methods=["PUT"], name="ops_menu_stock")
    app.add_route(refill, "/api/v1/ops/menu/refill", methods=["POST"], name="ops_menu_refill")
