"""Documents and records are strict: malformed values never reach a store adapter."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from orderflow.models.documents import (
    MENU_ITEM_ID_PATTERN,
    MenuItem,
    Order,
    OrderLine,
    OrderLineRequest,
    delivery_status_rank,
    order_status_rank,
    utc_now,
)
from orderflow.models.events import ALL_EVENTS, OrderCreated, OrderStatusUpdated
from orderflow.models.menu import DEMO_MENU
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.records import registry


@pytest.mark.parametrize(
    "body",
    [
        {"item_id": "pizza", "quantity": 0},
        {"item_id": "pizza", "quantity": -1},
        {"item_id": "pizza", "quantity": "2"},
        {"item_id": "pizza", "quantity": 1.5},
        {"item_id": "pizza", "quantity": True},
        {"item_id": {"$gt": ""}, "quantity": 1},
        {"item_id": "", "quantity": 1},
        {"item_id": "Pizza", "quantity": 1},
        {"item_id": "../etc", "quantity": 1},
        {"item_id": "a" * 65, "quantity": 1},
        {"item_id": "pizza", "quantity": 1, "price": 0},
        {"item_id": "pizza"},
    ],
)
def test_order_line_request_rejects_bad_input(body: dict) -> None:
    with pytest.raises(ValidationError):
        OrderLineRequest.model_validate(body)


def test_order_line_request_accepts_a_good_line_from_json() -> None:
    parsed = OrderLineRequest.model_validate_json('{"item_id": "quattro-formaggi", "quantity": 3}')
    assert (parsed.item_id, parsed.quantity) == ("quattro-formaggi", 3)


def test_order_ids_are_uuid_hex() -> None:
    line = OrderLine(item_id="pizza", name="Pizza", quantity=1, unit_price=100)
    now = utc_now()
    fields = {
        "lines": [line],
        "total": 100,
        "status": "created",
        "history": [],
        "created_at": now,
        "updated_at": now,
    }
    assert Order.model_validate({"id": "0123456789abcdef0123456789abcdef", **fields})
    for bad in ("", "not-hex", "0123456789ABCDEF0123456789ABCDEF", "0" * 33):
        with pytest.raises(ValidationError):
            Order.model_validate({"id": bad, **fields})
    with pytest.raises(ValidationError):
        Order.model_validate({"id": "0" * 32, **fields, "status": "lost"})
    with pytest.raises(ValidationError):
        Order.model_validate({"id": "0" * 32, **fields, "lines": []})


def test_status_ranks_follow_the_lifecycles() -> None:
    order = ["created", "confirmed", "preparing", "out_for_delivery", "delivered"]
    assert [order_status_rank(s) for s in order] == list(range(5))
    assert [delivery_status_rank(s) for s in ("waiting", "on_the_way", "delivered")] == [0, 1, 2]
    with pytest.raises(ValueError):
        order_status_rank("on_the_way")


def test_demo_menu_is_large_valid_and_unique() -> None:
    assert len(DEMO_MENU) >= 12
    ids = [item.id for item in DEMO_MENU]
    assert len(set(ids)) == len(ids)
    assert all(re.match(MENU_ITEM_ID_PATTERN, item_id) for item_id in ids)
    assert all(item.price > 0 and item.stock > 0 and item.description for item in DEMO_MENU)
    assert len({item.category for item in DEMO_MENU}) >= 4
    with pytest.raises(ValidationError):
        MenuItem(id="x", name="X", category="c", price=1, stock=-1)


def test_every_event_is_registered_with_a_versioned_type() -> None:
    types = [cls.event_type for cls in ALL_EVENTS]
    assert len(set(types)) == len(types) == 10
    assert all(t.endswith(".v1") for t in types)
    assert all(registry.get(t) is cls for t, cls in zip(types, ALL_EVENTS, strict=True))


def test_records_round_trip_through_an_envelope() -> None:
    line = OrderLine(item_id="pizza", name="Pizza", quantity=2, unit_price=100)
    created = OrderCreated(order_id="a" * 32, lines=[line], total=200, created_at=utc_now())
    envelope = Envelope.new(created, source="tests", key=created.order_id)
    decoded = registry.decode(Envelope.from_fields(envelope.to_fields()))
    assert decoded == created
    assert envelope.payload["status"] == "created"
    with pytest.raises(ValidationError):
        OrderStatusUpdated(order_id="a" * 32, status="confirmed", at=utc_now(), previous="lost")


def test_the_simulate_flag_is_on_the_wire_only_when_false() -> None:
    """Simulated orders' events stay byte-for-byte what older releases wrote and read;
    an event without the flag (any event from before it existed) decodes as simulated."""
    now = utc_now()
    old_payload = {"order_id": "a" * 32, "status": "confirmed", "at": now, "previous": "created"}
    simulated = OrderStatusUpdated.model_validate(old_payload)
    manual = OrderStatusUpdated.model_validate({**old_payload, "simulate": False})
    assert simulated.to_payload() == old_payload
    assert manual.to_payload() == {**old_payload, "simulate": False}
    for value, flag in ((simulated, True), (manual, False)):
        envelope = Envelope.new(value, source="tests", key=value.order_id)
        decoded = registry.decode(Envelope.from_fields(envelope.to_fields()))
        assert isinstance(decoded, OrderStatusUpdated) and decoded.simulate is flag
    assert simulated.simulate is True
    old_order = Order.model_validate_json(
        '{"id": "' + "b" * 32 + '", "lines": [{"item_id": "pizza", "name": "Pizza",'
        ' "quantity": 1, "unit_price": 100}], "total": 100, "status": "created",'
        ' "history": [], "created_at": "' + now + '", "updated_at": "' + now + '"}'
    )
    assert old_order.simulate is True
