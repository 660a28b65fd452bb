"""``GET /api/v1/ops/streams`` and ``GET /api/v1/ops/consumers``: what the runtime sees,
live (each call reads Redis; the page polls every few seconds).

The same views as ``orderflow streams`` (:mod:`orderflow.runtime.inspect`): per stream
its length and groups with lag, pending and the oldest pending entry's age; per group
its consumers — the worker processes seen (``<host>-<pid>``) and how long each has been
idle, which is how an operator spots a dead worker whose entries wait to be claimed.
"""

from __future__ import annotations

from dataclasses import asdict

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json

from orderflow.runtime.deadletter import count_dead_letters
from orderflow.runtime.inspect import consumer_infos, inspect_streams


async def list_streams(request: Request) -> HTTPResponse:
    redis = request.app.ctx.redis
    streams = await inspect_streams(redis)
    return json(
        {
            "streams": [stream.to_dict() for stream in streams],
            "dead_letters": await count_dead_letters(redis),
        }
    )


async def list_consumers(request: Request) -> HTTPResponse:
    redis = request.app.ctx.redis
    consumers: list[dict[str, object]] = []
    for stream in await inspect_streams(redis):
        for group in stream.groups:
            found = await consumer_infos(redis, stream.name, group.name)
            consumers.extend(asdict(consumer) for consumer in found)
    return json({"consumers": consumers})


def register(app: Sanic) -> None:
    app.add_route(list_streams, "/api/v1/ops/streams", methods=["GET"], name="ops_streams")
    app.add_route(list_consumers, "/api/v1/ops/consumers", methods=["GET"], name="ops_consumers")
