"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job).

Liveness never touches a dependency: a Redis outage must not make Kubernetes
restart every API pod. Readiness pings Redis and the store, each with a
timeout, and answers 503 (a problem naming what failed) if either does not
respond, so traffic is routed elsewhere until it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi

from orderflow.web.openapi import json_content, problem_content
from orderflow.web.problems import problem, problem_type, request_ext

CHECK_TIMEOUT_SECONDS = 2.0

READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


@openapi.definition(operation="healthz", summary="Liveness: the process answers", tag="health")
@openapi.response(200, json_content(READY_SCHEMA), "Alive")
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


async def _check(probe: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        return f"unreachable ({type(exc).__name__}: {exc})"[:300]
    return "ok"


@openapi.definition(
    operation="readyz", summary="Readiness: Redis and the store answer", tag="health"
)
@openapi.response(200, json_content(READY_SCHEMA), "Ready")
@openapi.response(503, problem_content(), "Redis or the store is not reachable")
async def readyz(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    redis_check, store_check = await asyncio.gather(
        _check(lambda: ctx.redis.ping()), _check(lambda: ctx.store.ping())
    )
    checks = {"redis": redis_check, "store": store_check}
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        return problem(
            503,
            "Not ready",
            "; ".join(f"{name}: {checks[name]}" for name in failed),
            problem_type("not-ready"),
            headers={"Retry-After": "5"},
            checks=checks,
            **request_ext(request),
        )
    return json({"status": "ready", "checks": checks})


def register(app: Sanic) -> None:
    app.add_route(healthz, "/healthz", methods=["GET"], name="healthz")
    app.add_route(readyz, "/readyz", methods=["GET"], name="readyz")
