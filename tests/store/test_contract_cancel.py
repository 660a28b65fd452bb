"""The cancel part of the store contract, against every adapter (sqlite always,
postgresql on the session's private server, mongodb when ORDERFLOW_MONGO_URL is set)."""

from __future__ import annotations

import asyncio

import pytest

from orderflow.models.documents import utc_now
from orderflow.models.store import NotCancellable, OrderNotFound, Store
from tests.store.factories import cancel_events, line, order_events, order_status_events


async def stock_of(store: Store) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


async def place_pizza_and_cola(store: Store) -> str:
    result = await store.place_order(
        [line("pizza", 2), line("cola", 1), line("pizza", 1)],
        idempotency_key=None,
        request_hash=None,
        events=order_events,
    )
    return result.order.id


async def outbox_types(store: Store) -> list[str]:
    return [message.envelope.event_type for message in await store.outbox_pending(limit=1000)]


@pytest.mark.parametrize("reached", ["created", "confirmed"])
async def test_cancel_returns_every_line_and_writes_its_events(
    menu_store: Store, reached: str
) -> None:
    store = menu_store
    before = await stock_of(store)
    order_id = await place_pizza_and_cola(store)
    if reached == "confirmed":
        await store.update_order_status(order_id, "confirmed", utc_now(), order_status_events)
    pending_before = len(await store.outbox_pending(limit=1000))

    result = await store.cancel_order(order_id, cancel_events)

    assert result.cancelled is True
    assert result.order.status == "cancelled"
    assert [h.status for h in result.order.history][-1] == "cancelled"
    assert result.order.delivery is None
    assert await stock_of(store) == before  # 3 pizzas and 1 cola back
    assert [m.envelope.event_type for m in result.outbox] == [
        "order.cancelled.v1",
        "stock.changed.v1",
    ]
    assert result.outbox[0].envelope.payload["previous"] == reached
    assert result.outbox[1].envelope.payload["item_ids"] == ["cola", "pizza"]
    pending = await store.outbox_pending(limit=1000)
    assert len(pending) == pending_before + 2
    assert {m.id for m in result.outbox} <= {m.id for m in pending}
    assert await store.get_order(order_id) == result.order


async def test_repeated_cancel_answers_the_same_and_returns_nothing_twice(
    menu_store: Store,
) -> None:
    store = menu_store
    order_id = await place_pizza_and_cola(store)
    first = await store.cancel_order(order_id, cancel_events)
    stock = await stock_of(store)
    pending = await outbox_types(store)

    again = await store.cancel_order(order_id, cancel_events)

    assert again.cancelled is False
    assert again.outbox == []
    assert again.order == first.order
    assert await stock_of(store) == stock
    assert await outbox_types(store) == pending


@pytest.mark.parametrize("reached", ["preparing", "out_for_delivery", "delivered"])
async def test_cancel_after_confirmed_is_refused_and_changes_nothing(
    menu_store: Store, reached: str
) -> None:
    store = menu_store
    order_id = await place_pizza_and_cola(store)
    await store.update_order_status(order_id, reached, utc_now(), order_status_events)
    stock = await stock_of(store)
    pending = await outbox_types(store)
    order = await store.get_order(order_id)

    with pytest.raises(NotCancellable) as refused:
        await store.cancel_order(order_id, cancel_events)

    assert refused.value.status == reached
    assert refused.value.order_id == order_id
    assert await stock_of(store) == stock
    assert await outbox_types(store) == pending
    assert await store.get_order(order_id) == order


async def test_cancel_of_an_unknown_order_is_not_found(menu_store: Store) -> None:
    with pytest.raises(OrderNotFound):
        await menu_store.cancel_order("f" * 32, cancel_events)


async def test_a_cancelled_order_never_moves_again(menu_store: Store) -> None:
    store = menu_store
    order_id = await place_pizza_and_cola(store)
    cancelled = (await store.cancel_order(order_id, cancel_events)).order
    pending = await outbox_types(store)

    for status in ("confirmed", "preparing", "out_for_delivery", "delivered"):
        change = await store.update_order_status(order_id, status, utc_now(), order_status_events)
        assert change.changed is False
        assert change.cancelled is True
        assert change.outbox == []
    assert await store.get_order(order_id) == cancelled
    assert await outbox_types(store) == pending


async def test_a_stale_status_of_a_live_order_is_not_reported_as_cancelled(
    menu_store: Store,
) -> None:
    store = menu_store
    order_id = await place_pizza_and_cola(store)
    await store.update_order_status(order_id, "preparing", utc_now(), order_status_events)
    change = await store.update_order_status(order_id, "confirmed", utc_now())
    assert (change.changed, change.cancelled) == (False, False)


async def test_update_order_status_never_sets_cancelled(menu_store: Store) -> None:
    store = menu_store
    order_id = await place_pizza_and_cola(store)
    with pytest.raises(ValueError, match="cancel_order"):
        await store.update_order_status(order_id, "cancelled", utc_now())
    order = await store.get_order(order_id)
    assert order is not None and order.status == "created"


RACES = 40


async def test_cancel_racing_preparing_has_exactly_one_winner(menu_store: Store) -> None:
    """Each order gets a cancel and a ``preparing`` at the same moment: the store's
    transaction decides, and every order ends in exactly one consistent state."""
    store = menu_store
    await store.refill(stock=1000)
    ids = []
    for _ in range(RACES):
        ids.append(await place_pizza_and_cola(store))
        await store.update_order_status(ids[-1], "confirmed", utc_now())

    async def cancel(order_id: str) -> bool:
        try:
            await store.cancel_order(order_id, cancel_events)
        except NotCancellable:
            return False
        return True

    async def prepare(order_id: str) -> tuple[bool, bool]:
        change = await store.update_order_status(order_id, "preparing", utc_now())
        return change.changed, change.cancelled

    outcomes = await asyncio.gather(*(asyncio.gather(cancel(i), prepare(i)) for i in ids))
    cancelled = 0
    for order_id, (was_cancelled, (prepared, dropped)) in zip(ids, outcomes, strict=True):
        order = await store.get_order(order_id)
        assert order is not None
        assert was_cancelled != prepared  # exactly one of the two took effect
        assert dropped == was_cancelled  # the losing update knows why it was dropped
        assert order.status == ("cancelled" if was_cancelled else "preparing")
        cancelled += was_cancelled
    stock = await stock_of(store)
    # Each order took 3 pizzas and 1 cola; only the cancelled ones gave them back.
    assert stock["pizza"] == 1000 - 3 * (RACES - cancelled)
    assert stock["cola"] == 1000 - (RACES - cancelled)
