"""The store contract for deliveries, run against every adapter (see conftest)."""

from __future__ import annotations

import asyncio

import pytest

from orderflow.models.documents import utc_now
from orderflow.models.store import (
    DeliveryNotFound,
    OrderNotFound,
    Store,
)
from tests.store.factories import (
    delivery_events,
    delivery_status_events,
    line,
    place,
)

# ------------------------------------------------------------ deliveries


async def test_delivery_is_created_once(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    await store.mark_published([m.id for m in await store.outbox_pending()])

    first = await store.create_delivery(order.id, delivery_events)
    again = await store.create_delivery(order.id, delivery_events)
    assert first.created and not again.created
    assert again.delivery == first.delivery and again.outbox == []
    delivery = first.delivery
    assert delivery.order_id == order.id and delivery.status == "waiting"
    pending = await store.outbox_pending()
    assert [m.envelope.event_type for m in pending] == [
        "delivery.created.v1",
        "delivery.simulate.v1",
    ]
    assert [m.id for m in pending] == [m.id for m in first.outbox]

    with pytest.raises(OrderNotFound):
        await store.create_delivery("e" * 32, delivery_events)


async def test_concurrent_delivery_creation_makes_one_delivery(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    results = await asyncio.gather(
        *(store.create_delivery(order.id, delivery_events) for _ in range(10))
    )
    assert len({result.delivery.id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    deliveries_rows = [
        m for m in await store.outbox_pending() if m.envelope.event_type == "delivery.created.v1"
    ]
    assert len(deliveries_rows) == 1


async def test_delivery_status_is_monotonic_and_shows_in_the_order(menu_store: Store) -> None:
    store = menu_store
    order = (await place(store, line("pizza", 1))).order
    delivery = (await store.create_delivery(order.id, delivery_events)).delivery
    await store.mark_published([m.id for m in await store.outbox_pending()])

    t1, t2 = utc_now(), utc_now()
    changes = [
        await store.update_delivery_status(delivery.id, status, at, delivery_status_events)
        for status, at in [
            ("on_the_way", t1),
            ("delivered", t2),
            ("on_the_way", utc_now()),
            ("delivered", utc_now()),
        ]
    ]
    assert [change.changed for change in changes] == [True, True, False, False]
    stored = await store.get_order(order.id)
    assert stored is not None and stored.delivery is not None
    assert stored.delivery.id == delivery.id
    assert stored.delivery.status == "delivered"
    assert [(c.status, c.at) for c in stored.delivery.history] == [
        ("waiting", delivery.created_at),
        ("on_the_way", t1),
        ("delivered", t2),
    ]
    pending = await store.outbox_pending()
    assert [(m.envelope.payload["order_id"], m.envelope.payload["status"]) for m in pending] == [
        (order.id, "on_the_way"),
        (order.id, "delivered"),
    ]
    with pytest.raises(DeliveryNotFound):
        await store.update_delivery_status("d" * 32, "delivered", utc_now())
