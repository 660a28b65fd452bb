"""The per-socket view (``orderflow.web.order_view.OrderView``): snapshot merge, monotonic filter.

Pure logic, no server: what these prove is the rule the socket tests rely on —
a message goes out only when it moves the order (or its delivery) forward, and
the status cache can only add newer information to what the store said.
"""

from __future__ import annotations

import json
import uuid

from orderflow.web.fanout import DeliveryUpdate, OrderUpdate, Update
from orderflow.web.order_view import OrderView, merge_cached_status

ORDER = uuid.uuid4().hex
DELIVERY = uuid.uuid4().hex


def stored_view() -> OrderView:
    return OrderView(
        ORDER,
        "preparing",
        [
            {"status": "created", "at": "t1"},
            {"status": "confirmed", "at": "t2"},
            {"status": "preparing", "at": "t3"},
        ],
    )


def test_only_newer_statuses_produce_messages() -> None:
    view = stored_view()
    assert view.apply(OrderUpdate(ORDER, "confirmed", "t2")) is None
    assert view.apply(OrderUpdate(ORDER, "preparing", "t3")) is None
    assert view.apply(OrderUpdate(ORDER, "no-such-status", "t9")) is None
    assert view.apply(OrderUpdate(ORDER, "out_for_delivery", "t4")) == {
        "type": "order.status",
        "order_id": ORDER,
        "status": "out_for_delivery",
        "at": "t4",
    }
    created = view.apply(DeliveryUpdate(ORDER, DELIVERY, "waiting", "t5", created=True))
    assert created is not None and created["type"] == "delivery.created"
    assert view.apply(DeliveryUpdate(ORDER, DELIVERY, "waiting", "t5", created=True)) is None
    moved = view.apply(DeliveryUpdate(ORDER, DELIVERY, "on_the_way", "t6"))
    assert moved is not None and moved["type"] == "delivery.status"
    assert view.snapshot_message()["delivery"] == {
        "delivery_id": DELIVERY,
        "status": "on_the_way",
        "history": [{"status": "waiting", "at": "t5"}, {"status": "on_the_way", "at": "t6"}],
    }


def test_encoded_messages_are_the_json_of_the_messages_and_shared_per_change() -> None:
    """Each socket of an order gets the same text, built once per change (and kind)."""
    updates: list[Update] = [
        OrderUpdate(ORDER, "out_for_delivery", "t4"),
        DeliveryUpdate(ORDER, DELIVERY, "on_the_way", "t6"),  # created: the first one seen
        DeliveryUpdate(ORDER, DELIVERY, "delivered", "t7"),
        OrderUpdate(ORDER, "delivered", "t8"),
    ]
    as_dicts, first, second = stored_view(), stored_view(), stored_view()
    expected = [json.dumps(as_dicts.apply(update)) for update in updates]
    texts = [first.apply_encoded(update) for update in updates]
    assert texts == expected
    again = [second.apply_encoded(update) for update in updates]
    assert all(a is b for a, b in zip(texts, again, strict=True))  # the same str objects
    assert [second.apply_encoded(update) for update in updates] == [None] * len(updates)
    assert json.loads(str(texts[1]))["type"] == "delivery.created"


def test_first_delivery_message_is_a_creation_even_if_the_created_event_was_missed() -> None:
    view = stored_view()
    message = view.apply(DeliveryUpdate(ORDER, DELIVERY, "on_the_way", "t6"))
    assert message is not None and message["type"] == "delivery.created"
    assert message["status"] == "on_the_way"


def test_a_newer_cache_entry_extends_the_stored_view() -> None:
    cached = {
        "order_id": ORDER,
        "status": "out_for_delivery",
        "at": "t4",
        "delivery": {"delivery_id": DELIVERY, "status": "waiting", "at": "t5"},
    }
    view = merge_cached_status(stored_view(), ORDER, cached)
    assert view is not None
    snapshot = view.snapshot_message()
    assert snapshot["status"] == "out_for_delivery"
    assert [h["status"] for h in snapshot["history"]][-2:] == ["preparing", "out_for_delivery"]
    assert snapshot["delivery"]["delivery_id"] == DELIVERY


def test_an_older_cache_entry_changes_nothing() -> None:
    cached = {"order_id": ORDER, "status": "confirmed", "at": "t2", "delivery": None}
    view = merge_cached_status(stored_view(), ORDER, cached)
    assert view is not None
    assert view.snapshot_message() == stored_view().snapshot_message()


def test_unknown_everywhere_is_unknown() -> None:
    assert merge_cached_status(None, ORDER, None) is None
    assert merge_cached_status(None, ORDER, {"status": "bogus", "at": "t"}) is None
