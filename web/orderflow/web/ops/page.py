"""``GET /ops``: the console page (static HTML + a JavaScript module, no data inside).

The page is public once the console is on — it holds nothing; everything it shows
comes from ``/api/v1/ops/`` with the token the operator types in (kept in the tab's
``sessionStorage``, gone when the tab closes).
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import file

from orderflow.web.ui import STATIC_DIR, exclude_from_openapi

OPS_HTML = STATIC_DIR / "ops.html"


async def console(request: Request) -> HTTPResponse:
    return await file(
        OPS_HTML, mime_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


def register(app: Sanic) -> None:
    app.add_route(console, "/ops", methods=["GET", "HEAD"], name="ops_page")
    exclude_from_openapi(app, "ops_page")
