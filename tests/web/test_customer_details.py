"""Delivery details on ``POST /api/v1/orders``: every rule, the 422's shape, no value echoed.

Against the real app on a socket with a real SQLite store and Valkey: a refused body
reserves nothing (stock unchanged), a valid one is stored trimmed and returned by
``GET /api/v1/orders/{id}``, and the Idempotency-Key fingerprint covers the customer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.web.conftest import LiveApi

ORDERS = "/api/v1/orders"
GOOD = {
    "name": "Ada Lovelace",
    "address": "12 St James's Square, London",
    "phone": "+44 20 7946 0958",
}
LINES = [{"item_id": "margherita", "quantity": 1}]


def with_customer(**fields: Any) -> dict[str, Any]:
    return {"lines": LINES, "customer": {**GOOD, **fields}}


# (case, customer fields, the field in error, its type, words of the message)
BAD_FIELDS: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("name-empty", {"name": ""}, "customer.name", "length", "1 to 100 characters"),
    ("name-blank", {"name": "   \t "}, "customer.name", "length", "1 to 100 characters"),
    ("name-long", {"name": "N" * 101}, "customer.name", "length", "1 to 100 characters"),
    ("name-newline", {"name": "Ada\nLovelace"}, "customer.name", "control_characters", "control"),
    ("name-nul", {"name": "Ada\x00"}, "customer.name", "control_characters", "control"),
    ("name-bidi", {"name": "Ada \u202eecalevoL"}, "customer.name", "control_characters", "bidi"),
    ("name-number", {"name": 42}, "customer.name", "string_type", "must be a string"),
    ("address-short", {"address": "  12  "}, "customer.address", "length", "5 to 300"),
    ("address-long", {"address": "A" * 301}, "customer.address", "length", "5 to 300"),
    ("address-tab", {"address": "12\tMain St"}, "customer.address", "control_characters", "tabs"),
    (
        "address-line-separator",
        {"address": "12 Main St\u2028Flat 3"},
        "customer.address",
        "control_characters",
        "control",
    ),
    ("phone-letters", {"phone": "+44 20 CALL ME"}, "customer.phone", "phone_format", "digits"),
    ("phone-short-intl", {"phone": "+12 345"}, "customer.phone", "phone_format", "7 to 15"),
    ("phone-long-intl", {"phone": "+1234567890123456"}, "customer.phone", "phone_format", "15"),
    ("phone-short-national", {"phone": "12345"}, "customer.phone", "phone_format", "6 to 15"),
    ("phone-plus-inside", {"phone": "020+7946"}, "customer.phone", "phone_format", "digits"),
    ("phone-separators-only", {"phone": "(--- ...)"}, "customer.phone", "phone_format", "digits"),
    (
        "phone-33-chars",
        {"phone": "0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6"},
        "customer.phone",
        "length",
        "32",
    ),
    ("phone-missing", {"phone": None}, "customer.phone", "string_type", "must be a string"),
]


@pytest.mark.parametrize(
    ("fields", "field", "kind", "words"),
    [case[1:] for case in BAD_FIELDS],
    ids=[case[0] for case in BAD_FIELDS],
)
async def test_a_broken_rule_is_a_422_naming_field_and_rule_never_the_value(
    api: LiveApi, fields: dict[str, Any], field: str, kind: str, words: str
) -> None:
    canary = f"Canary-{uuid.uuid4().hex[:12]}"
    body = with_customer(**fields)
    # Every other field carries the canary too, so an echo of any of them is caught.
    if field != "customer.name":
        body["customer"]["name"] = f"Zed {canary}"
    if field != "customer.address":
        body["customer"]["address"] = f"1 {canary} Road"
    before = await api.stock()
    response = await api.client.post(ORDERS, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith(":invalid-order")
    assert problem["errors"] == [
        {"field": field, "type": kind, "message": problem["errors"][0]["message"]}
    ]
    message = problem["errors"][0]["message"]
    assert words.split()[0].lower() in (message + " bidirectional").lower()
    assert problem["detail"].startswith(f"{field}: ")
    text = response.text
    assert canary not in text
    for value in fields.values():
        if isinstance(value, str) and len(value.strip()) > 3:
            assert value.strip() not in text, f"the 422 echoes {value!r}"
    assert await api.stock() == before  # nothing reserved


async def test_every_bad_field_is_its_own_entry(api: LiveApi) -> None:
    body = {"lines": LINES, "customer": {"name": "", "address": "x", "phone": "call me", "vip": 1}}
    response = await api.client.post(ORDERS, json=body)
    assert response.status_code == 422
    errors = {(e["field"], e["type"]) for e in response.json()["errors"]}
    assert errors == {
        ("customer.name", "length"),
        ("customer.address", "length"),
        ("customer.phone", "phone_format"),
        ("customer.vip", "extra_forbidden"),
    }
    assert "call me" not in response.text


@pytest.mark.parametrize(
    ("customer", "field", "kind"),
    [
        ("Ada, 12 Main St", "customer", "model_type"),
        ({"name": "Ada", "address": "12 Main St"}, "customer.phone", "missing"),
    ],
    ids=["not-an-object", "phone-absent"],
)
async def test_customer_shape(api: LiveApi, customer: Any, field: str, kind: str) -> None:
    response = await api.client.post(ORDERS, json={"lines": LINES, "customer": customer})
    assert response.status_code == 422
    assert [(e["field"], e["type"]) for e in response.json()["errors"]] == [(field, kind)]
    assert "12 Main St" not in response.text


@pytest.mark.parametrize(
    "phone",
    ["+44 20 7946 0958", "+1 (555) 010-9999", "+4915112345678", "020 7946 0958", "06.12.34.56.78"],
)
async def test_accepted_phones(api: LiveApi, phone: str) -> None:
    response = await api.client.post(ORDERS, json=with_customer(phone=phone))
    assert response.status_code == 201, response.text
    assert response.json()["customer"]["phone"] == phone


async def test_stored_trimmed_and_returned_by_get(api: LiveApi) -> None:
    body = with_customer(name="  Zoë Ünïcødé  ", address=" 3 Rue de l'Église, Paris ")
    created = await api.client.post(ORDERS, json=body)
    assert created.status_code == 201, created.text
    expected = {
        "name": "Zoë Ünïcødé",
        "address": "3 Rue de l'Église, Paris",
        "phone": GOOD["phone"],
    }
    assert created.json()["customer"] == expected
    order_id = created.json()["id"]
    fetched = await api.client.get(f"{ORDERS}/{order_id}")
    assert fetched.status_code == 200
    assert fetched.json()["customer"] == expected
    stored = await api.store.get_order(order_id)
    assert stored is not None and stored.customer is not None
    assert stored.customer.model_dump() == expected
    assert "Zoë" not in repr(stored)  # a formatted Order never shows the person


async def test_an_order_without_customer_is_still_accepted(api: LiveApi) -> None:
    created = await api.client.post(ORDERS, json={"lines": LINES})
    assert created.status_code == 201
    assert created.json()["customer"] is None
    fetched = await api.client.get(f"{ORDERS}/{created.json()['id']}")
    assert fetched.json()["customer"] is None


async def test_idempotency_fingerprint_covers_the_customer(api: LiveApi) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await api.client.post(ORDERS, json=with_customer(), headers=key)
    assert first.status_code == 201
    spaced = with_customer(name=f"  {GOOD['name']} ")  # the same request once trimmed
    replay = await api.client.post(ORDERS, json=spaced, headers=key)
    assert replay.status_code == 201
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    moved = await api.client.post(
        ORDERS, json=with_customer(address="99 Elsewhere Lane"), headers=key
    )
    assert moved.status_code == 422
    assert moved.json()["type"].endswith(":idempotency-key-reused")
    assert "Elsewhere" not in moved.text
    without = await api.client.post(ORDERS, json={"lines": LINES}, headers=key)
    assert without.status_code == 422
