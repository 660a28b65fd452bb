"""``POST /api/v1/benchmark/noop``: the yardstick of ``benchmarks/load.py``.

Why it exists: "the order route answers N requests/s" says nothing until it is
compared with what the same app, the same Sanic workers and the same client do
for a JSON POST that does no work. This route goes through every middleware the
order route goes through (correlation id, access log, request guard, security
headers, rate limit hook) and parses the JSON body, then answers ``200`` with the
body's size: no store, no Redis. ``post_vs_noop`` = orders/s ÷ no-op/s.

It is served only when ``ORDERFLOW_BENCHMARK_NOOP_ROUTE=true`` (off by default;
neither the demo nor the Helm chart sets it): a deployment has no use for it.
"""

from __future__ import annotations

import json as stdlib_json
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi

from orderflow.web.openapi import json_content, problem_content
from orderflow.web.problems import problem, problem_type, request_ext

ROUTE = "/api/v1/benchmark/noop"
NOOP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "bytes"],
    "properties": {"ok": {"type": "boolean"}, "bytes": {"type": "integer"}},
}


@openapi.definition(
    operation="benchmarkNoop",
    summary="No-op JSON POST (benchmarks only)",
    description=(
        "Parses the JSON body and does nothing else. Served only when "
        "ORDERFLOW_BENCHMARK_NOOP_ROUTE=true: benchmarks/load.py compares the order "
        "route's throughput with this one's."
    ),
    tag="benchmark",
)
@openapi.response(200, json_content(NOOP_SCHEMA), "Body parsed")
@openapi.response(400, problem_content(), "Body is not JSON")
async def noop(request: Request) -> HTTPResponse:
    raw = request.body or b""
    try:  # the same first parse of the raw body as the order route's (validation.py)
        stdlib_json.loads(raw)
    except (ValueError, RecursionError):
        return problem(
            400, "Malformed JSON", "The body must be a JSON document.",
            problem_type("malformed-json"), **request_ext(request),
        )  # fmt: skip
    return json({"ok": True, "bytes": len(raw)})


def register(app: Sanic) -> None:
    app.add_route(noop, ROUTE, methods=["POST"], name="benchmark_noop")
