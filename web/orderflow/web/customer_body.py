"""The ``customer`` of ``POST /api/v1/orders``: who receives the order, where, and a phone.

Each field is trimmed of surrounding whitespace, then checked; every broken rule is
one entry of the 422's ``errors`` (``customer.name``, ``customer.phone``...), naming
the field and the rule and never echoing the value -- the value is personal data, and
an error body ends up in client logs, proxies and bug reports. The rules, in order:

* no control characters (line breaks, tabs, NUL...), no Unicode line or paragraph
  separators and no bidirectional overrides (they would reorder a courier's label);
* ``name`` 1 to 100 characters, ``address`` 5 to 300;
* ``phone``: an international number (``+`` then 7 to 15 digits, E.164's maximum)
  or a national one (6 to 15 digits); spaces, dashes, dots and parentheses may
  separate the digits; at most 32 characters in all.

The browser's checkout form repeats these rules as hints (``static/js/checkout_details.js``);
the server's answer is the one that counts.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from orderflow.models.documents import Customer

NAME_LENGTH = (1, 100)
ADDRESS_LENGTH = (5, 300)
PHONE_MAX_LENGTH = 32
INTERNATIONAL_DIGITS = (7, 15)
NATIONAL_DIGITS = (6, 15)
PHONE_SEPARATORS = " -.()"

PHONE_RULE = (
    "must be an international number (+ then 7 to 15 digits) or a national one "
    "(6 to 15 digits); spaces, dashes, dots and parentheses may separate the digits"
)
_PHONE_PATTERN = r"^\+?[0-9 ().-]{6,31}$"
"""A first cut for clients (OpenAPI, the form's ``pattern``); the digit count is checked
on top of it."""

# Bidirectional embeddings, overrides and isolates: text that displays in another order
# than it is stored.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _has_control(value: str) -> bool:
    return any(
        ch in _BIDI_CONTROLS or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value
    )


def _checked_text(value: str, bounds: tuple[int, int]) -> str:
    """``value`` trimmed, or a ``PydanticCustomError`` naming the rule (not the value)."""
    trimmed = value.strip()
    if _has_control(trimmed):
        raise PydanticCustomError(
            "control_characters",
            "must not contain control characters (line breaks, tabs, bidirectional overrides)",
        )
    low, high = bounds
    if not low <= len(trimmed) <= high:
        raise PydanticCustomError(
            "length",
            "must be {low} to {high} characters (surrounding spaces do not count)",
            {"low": low, "high": high},
        )
    return trimmed


def _checked_phone(value: str) -> str:
    trimmed = value.strip()
    if _has_control(trimmed):
        raise PydanticCustomError(
            "control_characters", "must not contain control characters (line breaks, tabs)"
        )
    if len(trimmed) > PHONE_MAX_LENGTH:
        raise PydanticCustomError(
            "length", "must be at most {high} characters", {"high": PHONE_MAX_LENGTH}
        )
    international = trimmed.startswith("+")
    rest = trimmed[1:] if international else trimmed
    digits = sum(ch in "0123456789" for ch in rest)
    low, high = INTERNATIONAL_DIGITS if international else NATIONAL_DIGITS
    if any(ch not in "0123456789" and ch not in PHONE_SEPARATORS for ch in rest) or not (
        low <= digits <= high
    ):
        raise PydanticCustomError("phone_format", PHONE_RULE)
    return trimmed


class CustomerBody(BaseModel):
    """Delivery details of an order request; see the module docstring for the rules."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(description="Who receives the order (1 to 100 characters).")]
    address: Annotated[str, Field(description="Where to deliver (5 to 300 characters).")]
    phone: Annotated[str, Field(description="A phone number for the courier.")]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked_text(value, NAME_LENGTH)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _checked_text(value, ADDRESS_LENGTH)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return _checked_phone(value)

    def to_customer(self) -> Customer:
        return Customer(name=self.name, address=self.address, phone=self.phone)

    def __repr_args__(self) -> Any:
        """Personal data stays out of ``repr`` (a log line or traceback that shows it)."""
        return []


CUSTOMER_DESCRIPTION = (
    "Delivery details. Optional for API clients (an order without them is still accepted); "
    "the browser's checkout form always sends them. Stored with the order and returned only "
    "by GET /api/v1/orders/{id}; never in events, logs or error bodies."
)


def customer_body_schema() -> dict[str, Any]:
    """The JSON schema of ``customer`` for OpenAPI, with the rules' numbers."""
    no_controls = r"^[^\u0000-\u001f\u007f]*$"
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "address", "phone"],
        "description": CUSTOMER_DESCRIPTION,
        "properties": {
            "name": {
                "type": "string",
                "minLength": NAME_LENGTH[0],
                "maxLength": NAME_LENGTH[1],
                "pattern": no_controls,
                "description": "Who receives the order; trimmed, no control characters.",
            },
            "address": {
                "type": "string",
                "minLength": ADDRESS_LENGTH[0],
                "maxLength": ADDRESS_LENGTH[1],
                "pattern": no_controls,
                "description": "Delivery address on one line; trimmed, no control characters.",
            },
            "phone": {
                "type": "string",
                "maxLength": PHONE_MAX_LENGTH,
                "pattern": _PHONE_PATTERN,
                "description": f"A phone number that {PHONE_RULE}.",
            },
        },
    }
