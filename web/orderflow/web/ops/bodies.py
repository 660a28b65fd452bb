"""Request bodies of the ops API: small strict models, and one way to read them.

A malformed body is a 400, a body that breaks a rule a 422 naming each field —
the same split and problem types as ``POST /api/v1/orders``.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sanic import HTTPResponse, Request

from orderflow.agents.manual_steps import ManualStep
from orderflow.web.problems import problem, problem_type, request_ext
from orderflow.web.validation import InvalidBody, check_unique_keys

M = TypeVar("M", bound=BaseModel)

MAX_STOCK = 1_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StockBody(Strict):
    stock: int = Field(ge=0, le=MAX_STOCK)


class RefillBody(Strict):
    stock: int | None = Field(default=None, ge=0, le=MAX_STOCK)


class ReplayAllBody(Strict):
    stream: str | None = Field(default=None, min_length=1, max_length=256)


class AdvanceBody(Strict):
    """The step the operator saw (optional): a stale click is refused, not applied."""

    status: ManualStep | None = None


class PurgeBody(Strict):
    ids: list[str] | None = Field(default=None, max_length=10_000)
    all: bool = False


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def read_count(request: Request, name: str, default: int, maximum: int) -> int | HTTPResponse:
    """The query argument ``name`` as a whole number in 1..``maximum`` (``default`` when
    absent), or the 400 problem to return: how many entries a list call may ask for."""
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        return problem(
            400, "Invalid query", f"{name} must be a whole number from 1 to {maximum}.",
            problem_type("invalid-query"), **request_ext(request),
        )  # fmt: skip
    return int(raw)


def read_body(request: Request, model: type[M], *, empty_ok: bool = False) -> M | HTTPResponse:
    """``model`` from the request's JSON body, or the problem response to return."""
    raw = request.body or b""
    if not raw.strip():
        if empty_ok:
            return model()
        return problem(
            400, "Malformed JSON", "The request body is empty; send a JSON object.",
            problem_type("malformed-json"), **request_ext(request),
        )  # fmt: skip
    try:
        check_unique_keys(raw)  # {"stock": 1, "stock": 500}: refused, as on orders
        return model.model_validate_json(raw)
    except InvalidBody as exc:
        return problem(
            422, "Invalid request", exc.detail, problem_type("invalid-request"),
            errors=exc.errors, **request_ext(request),
        )  # fmt: skip
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return problem(
                400, "Malformed JSON", "The request body is not valid JSON.",
                problem_type("malformed-json"), **request_ext(request),
            )  # fmt: skip
        errors = [
            {"field": _path(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        return problem(
            422, "Invalid request", detail, problem_type("invalid-request"),
            errors=errors, **request_ext(request),
        )  # fmt: skip
