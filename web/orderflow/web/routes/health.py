"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job).

Liveness never touches a dependency: a Redis outage must not make Kubernetes
restart every API pod. Readiness pings Redis and the store, each with a
timeout, and answers 503 (a problem naming what failed) if either does not
respond, so traffic is routed elsewhere until it does.

``/readyz`` is reachable by anyone who can reach the API, so its 503 names the
dependency and the kind of failure (``unreachable`` or ``timeout``) and nothing
else: an exception's text carries the server's address, a URL or a user name.
That text goes to the log (WARNING, with the request's correlation id), where
the operator looks for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi

from orderflow.web.openapi import json_content, problem_content
from orderflow.web.problems import problem, problem_type, request_ext

CHECK_TIMEOUT_SECONDS = 2.0
OK, UNREACHABLE, TIMEOUT = "ok", "unreachable", "timeout"

log = logging.getLogger(__name__)

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


async def _check(name: str, probe: Callable[[], Awaitable[Any]]) -> str:
    """``ok``, ``timeout`` or ``unreachable``; the reason, with its internals, is logged."""
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("readiness: %s gave no answer within %gs", name, CHECK_TIMEOUT_SECONDS)
        return TIMEOUT
    except Exception as exc:
        log.warning("readiness: %s unreachable: %s: %s", name, type(exc).__name__, exc)
        return UNREACHABLE
    return OK


@openapi.definition(
    operation="readyz", summary="Readiness: Redis and the store answer", tag="health"
)
@openapi.response(200, json_content(READY_SCHEMA), "Ready")
@openapi.response(503, problem_content(), "Redis or the store is not reachable")
async def readyz(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    redis_check, store_check = await asyncio.gather(
        _check("redis", lambda: ctx.redis.ping()), _check("store", lambda: ctx.store.ping())
    )
    checks = {"redis": redis_check, "store": store_check}
    failed = [name for name, result in checks.items() if result != OK]
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
