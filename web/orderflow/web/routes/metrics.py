"""``GET /metrics``: Prometheus exposition, summed over every worker process."""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import raw
from sanic_ext import openapi

from orderflow.web.metrics import render_latest


@openapi.definition(
    operation="metrics", summary="Prometheus metrics (text exposition format)", tag="health"
)
@openapi.response(200, {"text/plain": {"schema": {"type": "string"}}}, "Metrics")
async def metrics(request: Request) -> HTTPResponse:
    body, content_type = render_latest()
    return raw(body, content_type=content_type)


def register(app: Sanic) -> None:
    app.add_route(metrics, "/metrics", methods=["GET"], name="metrics")
