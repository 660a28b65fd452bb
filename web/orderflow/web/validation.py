"""Request bodies the API accepts, validated strictly before anything touches the store.

Strict means: no type coercion (``"2"`` is not a quantity, ``true`` is not 1,
``{"$gt": ""}`` is not an item id), no unknown fields, bounded sizes. The
limits that an operator may tune (lines per order, quantity per line) come
from ``Settings`` through the validation context, so one model serves every
configuration and the OpenAPI schema is patched with the same numbers.

Malformed JSON is reported apart from a well-formed body that breaks a rule:
the first is a 400 (the client sent something that is not JSON), the second a
422 (JSON, but not an order).

A key twice in one object (``{"quantity": 1, "quantity": 5}``) is refused with
a 422 naming the key: JSON parsers disagree on which copy wins (ours took the
last), so a proxy, a log reader or an idempotency check upstream could see a
different order than the one placed. pydantic's fast JSON parser keeps the last
copy without a word, so the standard library's parser, which reports every
object's pairs, checks the body first; on a body of at most
``ORDERFLOW_MAX_BODY_BYTES`` that is a few microseconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import ujson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from orderflow.models.documents import ENTITY_ID_PATTERN, MENU_ITEM_ID_PATTERN
from orderflow.web.customer_body import CUSTOMER_DESCRIPTION, CustomerBody, customer_body_schema

# Menu item ids are lowercase slugs ("margherita", "iced-tea"); anything else can
# never name an item, so it is refused before a store lookup.
ITEM_ID_PATTERN = MENU_ITEM_ID_PATTERN
# Order ids are uuid4().hex; anything else cannot name an order.
ORDER_ID_PATTERN = ENTITY_ID_PATTERN
_ORDER_ID_RE = re.compile(ORDER_ID_PATTERN)


@dataclass(frozen=True)
class Limits:
    """The tunable bounds of an order (``ORDERFLOW_MAX_ORDER_LINES`` / ``_MAX_LINE_QUANTITY``)."""

    max_order_lines: int
    max_line_quantity: int


def _limits(info: ValidationInfo) -> Limits | None:
    context = info.context
    if isinstance(context, Limits):
        return context
    return None


class OrderLineBody(BaseModel):
    """One line of an order request: which menu item, how many."""

    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            pattern=ITEM_ID_PATTERN,
            description="Menu item id, as listed by GET /api/v1/menu.",
        ),
    ]
    quantity: Annotated[int, Field(ge=1, description="How many of this item.")]

    @field_validator("quantity")
    @classmethod
    def _quantity_within_limit(cls, value: int, info: ValidationInfo) -> int:
        limits = _limits(info)
        if limits is not None and value > limits.max_line_quantity:
            raise PydanticCustomError(
                "quantity_too_large",
                "quantity {value} is more than the {limit} allowed per line",
                {"value": value, "limit": limits.max_line_quantity},
            )
        return value


SIMULATE_DESCRIPTION = (
    "false: the simulator leaves the order at 'created' and an operator moves it through "
    "its lifecycle from the console (POST /api/v1/ops/orders/{id}/advance). Default true."
)


class OrderBody(BaseModel):
    """``POST /api/v1/orders`` body: one or more lines, each item at most once."""

    model_config = ConfigDict(extra="forbid", strict=True)

    lines: Annotated[
        list[OrderLineBody],
        Field(min_length=1, description="Items to order; each item id appears once."),
    ]
    simulate: Annotated[bool, Field(description=SIMULATE_DESCRIPTION)] = True
    customer: Annotated[CustomerBody | None, Field(description=CUSTOMER_DESCRIPTION)] = None

    @field_validator("lines")
    @classmethod
    def _bounded_and_unique(
        cls, value: list[OrderLineBody], info: ValidationInfo
    ) -> list[OrderLineBody]:
        limits = _limits(info)
        if limits is not None and len(value) > limits.max_order_lines:
            raise PydanticCustomError(
                "too_many_lines",
                "an order has at most {limit} lines, got {count}",
                {"limit": limits.max_order_lines, "count": len(value)},
            )
        seen: dict[str, int] = {}
        for index, line in enumerate(value):
            if line.item_id in seen:
                raise PydanticCustomError(
                    "duplicate_item",
                    "item '{item_id}' appears in lines {first} and {second}; "
                    "put it once with the total quantity",
                    {"item_id": line.item_id, "first": seen[line.item_id], "second": index},
                )
            seen[line.item_id] = index
        return value

    def request_hash(self) -> str:
        """Fingerprint of the request: a reused Idempotency-Key with another body is caught.

        ``simulate`` counts only when false, so the hash of a simulated order is what it
        was before the flag existed (a retry across an upgrade still replays) and an
        explicit ``"simulate": true`` is the same request as none. ``customer`` counts
        when given, trimmed (the same key with another address is another order, and
        one with other surrounding spaces is the same); absent, the hash is what it was
        before the field existed.
        """
        fields = self.model_dump(mode="json")
        if fields["simulate"]:
            del fields["simulate"]
        if fields["customer"] is None:
            del fields["customer"]
        canonical = ujson.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


class MalformedJSON(Exception):
    """The body is not JSON at all (a 400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidBody(Exception):
    """The body is JSON but breaks the request model (a 422); ``errors`` lists each problem."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        if len(errors) > 3:
            summary += f"; and {len(errors) - 3} more"
        super().__init__(summary)
        self.detail = summary


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


_TYPE_ERRORS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "model_type": "must be an object",
    "dict_type": "must be an object",
}


def _message(error: Any) -> str:
    kind = error["type"]
    if kind in _TYPE_ERRORS:
        return f"{_TYPE_ERRORS[kind]}, got {_json_kind(error.get('input'))}"
    if kind == "string_pattern_mismatch":
        return f"is not a menu item id (expected a lowercase slug matching {ITEM_ID_PATTERN})"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "missing":
        return "is required"
    if kind == "int_from_float":
        return "must be a whole number"
    if kind == "too_short":
        return "must not be empty: an order needs at least one line"
    if kind == "greater_than_equal":
        return f"must be at least {error.get('ctx', {}).get('ge')}, got {error.get('input')}"
    if kind in ("string_too_long", "string_too_short"):
        return "is not a menu item id (1 to 64 characters)"
    return str(error["msg"])


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def check_unique_keys(raw: bytes) -> None:
    """Raise ``InvalidBody`` if an object in ``raw`` has a key twice.

    A body that is not JSON at all passes here: pydantic's parser reports that
    with its own, better message.
    """
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as dup:
        raise InvalidBody(
            [
                {
                    "field": "body",
                    "message": f"the key {dup.key!r} appears more than once in one object",
                    "type": "duplicate_key",
                }
            ]
        ) from None
    except (ValueError, RecursionError):  # not JSON (JSONDecodeError, UnicodeDecodeError)
        return


def parse_order_body(raw: bytes, limits: Limits) -> OrderBody:
    """Parse and validate a request body; raises ``MalformedJSON`` or ``InvalidBody``."""
    if not raw.strip():
        raise MalformedJSON("The request body is empty; send a JSON object with 'lines'.")
    check_unique_keys(raw)
    try:
        return OrderBody.model_validate_json(raw, context=limits)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            reason = str(errors[0].get("ctx", {}).get("error", errors[0]["msg"]))
            raise MalformedJSON(f"The request body is not valid JSON: {reason}.") from None
        raise InvalidBody(
            [
                {"field": _field_path(e["loc"]), "message": _message(e), "type": e["type"]}
                for e in errors
            ]
        ) from None


def is_plausible_order_id(order_id: str) -> bool:
    """Shape check for a path parameter before it reaches the store (32 lowercase hex)."""
    return bool(_ORDER_ID_RE.fullmatch(order_id))


def order_body_schema(limits: Limits) -> dict[str, Any]:
    """JSON schema of the request body with this deployment's limits, inlined for OpenAPI."""
    line = OrderLineBody.model_json_schema()
    line.pop("title", None)
    line["properties"]["quantity"]["maximum"] = limits.max_line_quantity
    for prop in line["properties"].values():
        prop.pop("title", None)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["lines"],
        "properties": {
            "lines": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.max_order_lines,
                "description": "Items to order; each item id appears once.",
                "items": line,
            },
            "simulate": {"type": "boolean", "default": True, "description": SIMULATE_DESCRIPTION},
            "customer": customer_body_schema(),
        },
        "example": {
            "lines": [{"item_id": "margherita", "quantity": 2}],
            "customer": {
                "name": "Ada Lovelace",
                "address": "12 St James's Square, London SW1Y 4JH",
                "phone": "+44 20 7946 0958",
            },
        },
    }
