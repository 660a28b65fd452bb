"""Dead letters from the console: list, show, replay, purge (``orderflow dlq`` over HTTP).

Replay puts the original entry back on its source stream with the same ``event_id``
(:func:`orderflow.runtime.deadletter.replay`), so an event that was in fact processed
is skipped by dedupe rather than handled twice. Ids are Redis entry ids
(``<ms>-<seq>``); the route pattern admits nothing else, so ``replay`` and ``purge``
can never be mistaken for an id.
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic
from sanic.response import empty, json

from orderflow.runtime import deadletter
from orderflow.web.ops.auth import audit
from orderflow.web.ops.bodies import PurgeBody, ReplayAllBody, read_body, read_count
from orderflow.web.problems import problem, problem_type, request_ext

BASE = "/api/v1/ops/dead-letters"
ONE = BASE + r"/<dead_letter_id:\d{1,20}-\d{1,20}>"
MAX_LIST = 500


def not_found(request: Request, dead_letter_id: str) -> HTTPResponse:
    return problem(
        404, "No such dead letter", f"There is no dead letter {dead_letter_id}.",
        problem_type("dead-letter-not-found"), **request_ext(request),
    )  # fmt: skip


async def list_letters(request: Request) -> HTTPResponse:
    count = read_count(request, "count", 50, MAX_LIST)
    if isinstance(count, HTTPResponse):
        return count
    redis = request.app.ctx.redis
    letters = await deadletter.list_dead_letters(
        redis, count, stream=request.args.get("stream") or None
    )
    return json(
        {
            "dead_letters": [letter.to_dict() for letter in letters],
            "total": await deadletter.count_dead_letters(redis),
        }
    )


async def show_letter(request: Request, dead_letter_id: str) -> HTTPResponse:
    letter = await deadletter.get_dead_letter(request.app.ctx.redis, dead_letter_id)
    if letter is None:
        return not_found(request, dead_letter_id)
    return json(letter.to_dict())


async def replay_letter(request: Request, dead_letter_id: str) -> HTTPResponse:
    redis = request.app.ctx.redis
    letter = await deadletter.get_dead_letter(redis, dead_letter_id)
    if letter is None:
        return not_found(request, dead_letter_id)
    try:
        entry_id = await deadletter.replay(redis, letter, maxlen=_maxlen(request))
    except ValueError as exc:  # a letter without a source stream or raw entry
        return problem(
            409, "Cannot replay", str(exc), problem_type("dead-letter-not-replayable"),
            **request_ext(request),
        )  # fmt: skip
    audit(request, "dead-letter.replay", dead_letter_id=letter.id, stream=letter.stream)
    return json({"replayed": letter.id, "stream": letter.stream, "entry_id": entry_id})


async def replay_all(request: Request) -> HTTPResponse:
    body = read_body(request, ReplayAllBody, empty_ok=True)
    if isinstance(body, HTTPResponse):
        return body
    redis = request.app.ctx.redis
    replayed, skipped = 0, []
    async for letter in deadletter.iter_dead_letters(redis, body.stream):
        try:
            await deadletter.replay(redis, letter, maxlen=_maxlen(request))
        except ValueError:
            skipped.append(letter.id)
            continue
        replayed += 1
    audit(request, "dead-letter.replay-all", stream=body.stream or "*", replayed=replayed)
    return json({"replayed": replayed, "not_replayable": skipped})


async def delete_letter(request: Request, dead_letter_id: str) -> HTTPResponse:
    if not await deadletter.purge(request.app.ctx.redis, [dead_letter_id]):
        return not_found(request, dead_letter_id)
    audit(request, "dead-letter.purge", dead_letter_id=dead_letter_id)
    return empty()


async def purge_letters(request: Request) -> HTTPResponse:
    body = read_body(request, PurgeBody)
    if isinstance(body, HTTPResponse):
        return body
    if body.all == bool(body.ids):
        return problem(
            422, "Invalid request", "Send either 'ids' (a non-empty list) or 'all': true.",
            problem_type("invalid-request"), **request_ext(request),
        )  # fmt: skip
    redis = request.app.ctx.redis
    removed = await deadletter.purge(redis, body.ids, all=body.all)
    audit(request, "dead-letter.purge-many", all=body.all, purged=removed)
    return json({"purged": removed})


def _maxlen(request: Request) -> int | None:
    return request.app.ctx.settings.stream_maxlen or None


def register(app: Sanic) -> None:
    app.add_route(list_letters, BASE, methods=["GET"], name="ops_dead_letters")
    app.add_route(replay_all, BASE + "/replay", methods=["POST"], name="ops_dead_letters_replay")
    app.add_route(purge_letters, BASE + "/purge", methods=["POST"], name="ops_dead_letters_purge")
    app.add_route(show_letter, ONE, methods=["GET"], name="ops_dead_letter")
    app.add_route(delete_letter, ONE, methods=["DELETE"], name="ops_dead_letter_delete")
    app.add_route(replay_letter, ONE + "/replay", methods=["POST"], name="ops_dead_letter_replay")
