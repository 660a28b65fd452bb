"""``GET /docs``: the API documentation page, served entirely from this server.

sanic-ext's ReDoc and Swagger pages load their scripts and fonts from CDNs (a blank
page without internet, an inline script the Content-Security-Policy refuses, and an
OAuth2 redirect page the *server* fetched from a CDN on request). Here the page is a
file of ours (``static/docs.html`` + ``static/js/docs.js``) and Swagger UI's own
assets come from the ``swagger-ui-bundle`` package on PyPI, under ``/docs/assets/``,
through the same fixed file list as ``/static`` (:mod:`orderflow.web.static_files`).
The document itself stays where it was: ``/docs/openapi.json``.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from sanic import HTTPResponse, Request, Sanic
from sanic.response import file

from orderflow.web.static_files import StaticFiles
from orderflow.web.ui import STATIC_DIR, exclude_from_openapi

DOCS_HTML = STATIC_DIR / "docs.html"
ASSETS_DIR = Path(swagger_ui_bundle.swagger_ui_path)


async def docs_page(request: Request) -> HTTPResponse:
    return await file(
        DOCS_HTML, mime_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


def register(app: Sanic) -> None:
    app.add_route(docs_page, "/docs", methods=["GET", "HEAD"], name="docs_page")
    app.add_route(
        StaticFiles(ASSETS_DIR), "/docs/assets/<path:path>", methods=["GET", "HEAD"],
        name="docs_assets",
    )  # fmt: skip
    exclude_from_openapi(app, "docs_page", "docs_assets")
