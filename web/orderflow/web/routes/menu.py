"""``GET /api/v1/menu``: what can be ordered, with prices (minor units) and live stock."""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi

from orderflow.models.menu import MENU_CURRENCY
from orderflow.web.openapi import MENU_SCHEMA, json_content, problem_content


@openapi.definition(
    operation="listMenu",
    summary="List the menu",
    description=(
        "Every menu item with its price in minor units (cents) of `currency` (ISO 4217) and "
        "the stock left now."
    ),
    tag="menu",
)
@openapi.response(200, json_content(MENU_SCHEMA), "The menu")
@openapi.response(503, problem_content(), "The store is not available")
async def list_menu(request: Request) -> HTTPResponse:
    items = await request.app.ctx.store.list_menu()
    return json(
        {"items": [item.model_dump(mode="json") for item in items], "currency": MENU_CURRENCY}
    )


def register(app: Sanic) -> None:
    app.add_route(list_menu, "/api/v1/menu", methods=["GET"], name="menu_list")
