"""The browser UI: ``/`` and its static assets from ``web/orderflow/web/static/``
(served by :mod:`orderflow.web.static_files`).

Plain HTML, CSS and JavaScript modules, served as files: there is no front-end
build step, so ``make demo`` needs nothing but Python, and what the browser runs
is exactly what is in the repository.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file
from sanic_ext.extensions.openapi import openapi

from orderflow.web.static_files import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"

# The page is small and changes with the code; make browsers revalidate it.
_NO_CACHE = {"Cache-Control": "no-cache"}


async def index(request: Request) -> HTTPResponse:
    """The single page: menu, cart and order tracking."""
    return await file(INDEX_HTML, mime_type="text/html; charset=utf-8", headers=_NO_CACHE)


def register(app: Sanic) -> None:
    """Serve ``/`` and ``/static/*``; the page is left out of the OpenAPI document."""
    app.add_route(index, "/", methods=["GET", "HEAD"], name="ui_index")
    app.add_route(
        StaticFiles(STATIC_DIR), "/static/<path:path>", methods=["GET", "HEAD"], name="ui_static"
    )
    exclude_from_openapi(app, "ui_index", "ui_static")


def exclude_from_openapi(app: Sanic, *route_names: str) -> None:
    """Keep non-API routes (the page, the WebSocket) out of the API document.

    Sanic wraps some handlers (WebSocket handlers become a ``partial``), so the
    exclusion is set on the handler object the router actually holds.
    """
    wanted = {f"{app.name}.{name}" for name in route_names}
    for route in app.router.routes:
        if route.name in wanted:
            openapi.exclude()(route.handler)
