"""The store contract, run against every adapter (see conftest: sqlite always, mongodb if set).

Menu, orders and their statuses here; deliveries in test_contract_deliveries.py, the
outbox in test_contract_outbox.py, cancels, customers and manual orders in their own.
"""

from __future__ import annotations

import asyncio

import pytest

from orderflow.models.documents import MenuItem, utc_now
from orderflow.models.store import (
    IdempotencyKeyReused,
    OrderNotFound,
    OutOfStock,
    PlaceOrderResult,
    Store,
    UnknownItem,
)
from tests.store.conftest import TEST_MENU
from tests.store.factories import (
    line,
    order_status_events,
    place,
    stock_of,
)

# ------------------------------------------------------------------ menu


async def test_seed_menu_is_idempotent_and_keeps_stock(store: Store) -> None:
    assert await store.seed_menu(TEST_MENU) == 3
    await place(store, line("pizza", 4))
    assert await store.seed_menu(TEST_MENU) == 0  # nothing new, stock not reset
    extra = MenuItem(id="salad", name="Salad", category="salad", price=800, stock=3)
    assert await store.seed_menu([*TEST_MENU, extra]) == 1
    menu = await store.list_menu()
    assert [item.id for item in menu] == ["pizza", "cola", "last-slice", "salad"]
    assert menu[0].stock == 6
    assert menu[1] == TEST_MENU[1]


async def test_set_stock_and_refill(menu_store: Store) -> None:
    store = menu_store
    await place(store, line("pizza", 3), line("cola", 5))
    await store.set_stock("last-slice", 1)
    assert await stock_of(store) == {"pizza": 7, "cola": 0, "last-slice": 1}
    assert await store.refill() == 3
    assert await stock_of(store) == {"pizza": 10, "cola": 5, "last-slice": 7}
    assert await store.refill(stock=2) == 3
    assert await stock_of(store) == {"pizza": 2, "cola": 2, "last-slice": 2}
    with pytest.raises(UnknownItem) as unknown:
        await store.set_stock("nope", 1)
    assert unknown.value.item_ids == ["nope"]
    with pytest.raises(ValueError):
        await store.set_stock("pizza", -1)
    assert await stock_of(store) == {"pizza": 2, "cola": 2, "last-slice": 2}


# ---------------------------------------------------------------- orders


async def test_multi_line_order_reserves_every_line(menu_store: Store) -> None:
    store = menu_store
    result = await place(store, line("pizza", 2), line("cola", 3))
    assert isinstance(result, PlaceOrderResult)
    assert not result.replayed
    order = result.order
    assert [(ln.item_id, ln.name, ln.quantity, ln.unit_price) for ln in order.lines] == [
        ("pizza", "Pizza", 2, 1000),
        ("cola", "Cola", 3, 250),
    ]
    assert order.total == 2 * 1000 + 3 * 250
    assert order.status == "created"
    assert [change.status for change in order.history] == ["created"]
    assert await stock_of(store) == {"pizza": 8, "cola": 2, "last-slice": 7}
    assert await store.count_orders() == 1
    assert await store.count_orders("cola") == 1
    assert await store.count_orders("last-slice") == 0
    # The outbox rows of the transaction are returned and pending.
    assert [m.stream for m in result.outbox] == ["orders-stream", "simulate-order-stream"]
    pending = await store.outbox_pending()
    assert [m.id for m in pending] == [m.id for m in result.outbox]
    assert pending[0].envelope == result.outbox[0].envelope
    assert pending[0].envelope.payload["order_id"] == order.id
    assert pending[0].envelope.event_type == "order.created.v1"
    # And the stored order reads back identically.
    assert await store.get_order(order.id) == order


async def test_out_of_stock_reserves_nothing_and_names_the_item(menu_store: Store) -> None:
    store = menu_store
    with pytest.raises(OutOfStock) as error:
        await place(store, line("pizza", 2), line("cola", 6))
    assert (error.value.item_id, error.value.name) == ("cola", "Cola")
    assert (error.value.requested, error.value.available) == (6, 5)
    assert "Cola" in str(error.value) and "5 left" in str(error.value)
    assert await stock_of(store) == {"pizza": 10, "cola": 5, "last-slice": 7}
    assert await store.count_orders() == 0
    assert await store.outbox_pending() == []


async def test_duplicate_item_lines_are_checked_together(menu_store: Store) -> None:
    with pytest.raises(OutOfStock) as error:
        await place(menu_store, line("cola", 3), line("cola", 3))
    assert (error.value.requested, error.value.available) == (6, 5)
    assert (await stock_of(menu_store))["cola"] == 5


async def test_unknown_item_reserves_nothing(menu_store: Store) -> None:
    store = menu_store
    with pytest.raises(UnknownItem) as error:
        await place(store, line("pizza", 1), line("ghost", 1), line("phantom", 2))
    assert error.value.item_ids == ["ghost", "phantom"]
    assert await stock_of(store) == {"pizza": 10, "cola": 5, "last-slice": 7}
    assert await store.count_orders() == 0


async def test_concurrent_buyers_of_the_last_items_never_oversell(menu_store: Store) -> None:
    store = menu_store
    outcomes = await asyncio.gather(
        *(place(store, line("last-slice", 1)) for _ in range(50)), return_exceptions=True
    )
    succeeded = [o for o in outcomes if isinstance(o, PlaceOrderResult)]
    rejected = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert len(succeeded) == 7
    assert len(rejected) == 43
    assert len({r.order.id for r in succeeded}) == 7
    assert all(r.item_id == "last-slice" and r.available == 0 for r in rejected)
    assert (await stock_of(store))["last-slice"] == 0
    assert await store.count_orders("last-slice") == 7
    assert len(await store.outbox_pending(limit=1000)) == 7 * 2


async def test_get_unknown_order_is_none(store: Store) -> None:
    assert await store.get_order("0" * 32) is None


# ----------------------------------------------------------- idempotency


async def test_idempotency_key_replays_the_first_order(menu_store: Store) -> None:
    store = menu_store
    first = await place(store, line("pizza", 2), key="key-1", request_hash="h1")
    again = await place(store, line("pizza", 2), key="key-1", request_hash="h1")
    assert again.replayed and not first.replayed
    assert again.order == first.order
    assert again.outbox == []
    assert (await stock_of(store))["pizza"] == 8
    assert await store.count_orders() == 1
    assert len(await store.outbox_pending()) == 2
    with pytest.raises(IdempotencyKeyReused) as reused:
        await place(store, line("pizza", 1), key="key-1", request_hash="h2")
    assert reused.value.key == "key-1"
    assert (await stock_of(store))["pizza"] == 8
    other = await place(store, line("pizza", 1), key="key-2", request_hash="h1")
    assert other.order.id != first.order.id
    assert (await stock_of(store))["pizza"] == 7


async def test_concurrent_retries_with_one_key_make_one_order(menu_store: Store) -> None:
    store = menu_store
    results = await asyncio.gather(
        *(place(store, line("cola", 1), key="same", request_hash="h") for _ in range(10))
    )
    assert len({r.order.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert (await stock_of(store))["cola"] == 4
    assert await store.count_orders() == 1


# -------------------------------------------------------- order status


async def test_order_status_is_monotonic(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    await store.mark_published([m.id for m in await store.outbox_pending()])

    t1, t2, t3 = utc_now(), utc_now(), utc_now()
    changes = [
        await store.update_order_status(order.id, status, at, order_status_events)
        for status, at in [
            ("confirmed", t1),
            ("confirmed", t2),
            ("out_for_delivery", t2),
            ("preparing", t3),
            ("created", t3),
        ]
    ]
    assert [change.changed for change in changes] == [True, False, True, False, False]
    assert [len(change.outbox) for change in changes] == [1, 0, 1, 0, 0]

    stored = await store.get_order(order.id)
    assert stored is not None
    assert stored.status == "out_for_delivery"
    assert [(c.status, c.at) for c in stored.history] == [
        ("created", order.created_at),
        ("confirmed", t1),
        ("out_for_delivery", t2),
    ]
    # One outbox row per applied transition, none for the rejected ones.
    pending = await store.outbox_pending()
    assert [(m.envelope.payload["previous"], m.envelope.payload["status"]) for m in pending] == [
        ("created", "confirmed"),
        ("confirmed", "out_for_delivery"),
    ]
    # What each call returned is what it committed: the rows the relay would find.
    assert [m.id for m in pending] == [m.id for c in changes for m in c.outbox]


async def test_a_write_without_events_writes_no_outbox_row(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    await store.mark_published([m.id for m in await store.outbox_pending()])
    change = await store.update_order_status(order.id, "confirmed", utc_now())
    assert change.changed and change.outbox == []
    assert await store.outbox_pending() == []


async def test_concurrent_duplicate_status_reports_apply_once(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    at = utc_now()
    applied = await asyncio.gather(
        *(
            store.update_order_status(order.id, "confirmed", at, order_status_events)
            for _ in range(10)
        )
    )
    assert sum(change.changed for change in applied) == 1
    stored = await store.get_order(order.id)
    assert stored is not None
    assert [c.status for c in stored.history] == ["created", "confirmed"]


async def test_status_of_unknown_order_or_bad_status_raises(menu_store: Store) -> None:
    with pytest.raises(OrderNotFound):
        await menu_store.update_order_status("f" * 32, "confirmed", utc_now())
    order = (await place(menu_store, line("pizza", 1))).order
    with pytest.raises(ValueError):
        await menu_store.update_order_status(order.id, "teleported", utc_now())
