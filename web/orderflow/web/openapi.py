"""The OpenAPI document at ``/docs``: sanic-ext set up lean, and schemas it can print.

sanic-ext writes OpenAPI 3.0.3. Pydantic writes JSON Schema 2020-12 with
``$defs`` references and ``{"type": "null"}`` unions, which 3.0 does not know;
``openapi30`` turns one into the other (inline references, ``nullable``), so
the spec validates and schemathesis can load it.

Only the extensions we use are switched on: OpenAPI, and sanic-ext's HTTP
helpers for automatic ``HEAD``/``OPTIONS`` routes (CORS preflight needs
``OPTIONS``). Its CORS and dependency injection are off; CORS is ours
(``orderflow.web.cors``), configured by ``ORDERFLOW_CORS_ORIGINS``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Sanic
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder
from sanic_ext.extensions.openapi.extension import OpenAPIExtension
from sanic_ext.extensions.openapi.types import String

from orderflow.models.documents import MenuItem, Order
from orderflow.web.validation import ORDER_ID_PATTERN

SPEC_PATH = "/docs/openapi.json"

_DROP = {"title", "examples"}


def openapi30(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema rewritten as a self-contained OpenAPI 3.0 schema object."""
    defs = schema.get("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return convert(defs[name])
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key == "$defs":
                continue
            if key == "const":
                out["enum"] = [value]
                continue
            if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                # 2020-12 puts the bound here; OpenAPI 3.0 wants minimum + a boolean flag
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
                continue
            out[key] = convert(value)
        for union in ("anyOf", "oneOf"):
            options = out.get(union)
            if isinstance(options, list) and any(o == {"type": "null"} for o in options):
                rest = [o for o in options if o != {"type": "null"}]
                del out[union]
                if len(rest) == 1:
                    out.update(rest[0])
                else:
                    out[union] = rest
                out["nullable"] = True
        return out

    converted: dict[str, Any] = convert(schema)
    return converted


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return openapi30(model.model_json_schema(mode="serialization"))


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; every error of this API has this shape.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What was wrong, for a human."},
        "instance": {"type": "string", "description": "The request path."},
        "correlation_id": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "422 only: one entry per invalid field.",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

ORDER_SCHEMA = model_schema(Order)
MENU_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items", "currency"],
    "properties": {
        "items": {"type": "array", "items": model_schema(MenuItem)},
        "currency": {
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 code of every price (in its minor units)",
        },
    },
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def order_id_parameter() -> dict[str, Any]:
    """The ``{order_id}`` path parameter of the order routes (32 lowercase hex digits)."""
    return {
        "name": "order_id",
        "location": "path",
        "schema": String(pattern=ORDER_ID_PATTERN),
        "required": True,
    }


def problem_content() -> dict[str, Any]:
    return {"application/problem+json": {"schema": PROBLEM_SCHEMA}}


def document_response_extras(handler: Any, status: int, **fields: Any) -> None:
    """Add ``headers``/``links`` to a documented response.

    sanic-ext's ``Response`` keeps only the fields it declares (content,
    description), so the OpenAPI members it lacks are set on the stored
    definition directly.
    """
    operation = OperationStore()[handler]
    operation.responses[status]._fields.update(fields)


class _OpenAPIWithoutPages(OpenAPIExtension):
    """sanic-ext's OpenAPI with its CDN pages off: its start-up banner links to the page
    it would have served (``openapi.index``), which then does not exist."""

    name = "openapispec"  # extension names are unique and alphabetic

    def label(self) -> str:
        return SPEC_PATH


def setup(app: Sanic) -> None:
    """Enable OpenAPI (+ auto HEAD/OPTIONS) and describe the API; nothing else of sanic-ext.

    sanic-ext keeps the document's paths in a process-wide singleton that every app
    started in the process adds to. A server process builds one app, but a process
    that builds another (a test after a test) would otherwise serve the paths of
    both, e.g. the benchmark no-op route on an app that does not serve it; so the
    document starts empty for each app built (the handlers' definitions stay)."""
    SpecificationBuilder.reset()
    app.extend(
        extensions=[_OpenAPIWithoutPages, HTTPExtension],
        built_in_extensions=False,
        config={
            "cors": False,
            "http_all_methods": False,
            "http_auto_head": True,
            "http_auto_options": True,
            # sanic-ext's own pages load from CDNs; /docs is ours (orderflow.web.docs_ui).
            "oas_ui_default": None,
            "oas_ui_redoc": False,
            "oas_ui_swagger": False,
            "oas_autodoc": True,
        },
    )
    app.ext.openapi.describe(
        "orderflow API",
        version="1",
        description=(
            "Order food, follow the order. Every error is an RFC 9457 "
            "`application/problem+json` body. Live tracking: WebSocket "
            "`/ws/v1/order-tracking/{order_id}`."
        ),
    )
