"""The store contract for switchable simulation and the console's order list.

Runs against every adapter (conftest: SQLite always, PostgreSQL on the private
server, MongoDB when ``ORDERFLOW_MONGO_URL`` is set). The flag is stored with the
order, returned with it, and handed to the event factories of every status change
(the order's and its delivery's) so the events can carry it; ``recent_orders``
lists the newest orders first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow.models.documents import utc_now
from orderflow.models.store import (
    MAX_RECENT_ORDERS,
    OutboxMessage,
    StatusTransition,
    Store,
    no_events,
)
from tests.store.factories import line
from tests.store.upgrades import upgrade_postgres, upgrade_sqlite


async def place(store: Store, *, simulate: bool, key: str | None = None) -> str:
    result = await store.place_order(
        [line("pizza", 1)],
        idempotency_key=key,
        request_hash="h" if key else None,
        events=no_events,
        simulate=simulate,
    )
    return result.order.id


async def test_the_flag_is_stored_and_returned(menu_store: Store) -> None:
    store = menu_store
    manual = await place(store, simulate=False, key="manual")
    simulated = await place(store, simulate=True)
    by_default = (
        await store.place_order(
            [line("cola", 1)], idempotency_key=None, request_hash=None, events=no_events
        )
    ).order.id
    flags = {}
    for order_id in (manual, simulated, by_default):
        order = await store.get_order(order_id)
        assert order is not None
        flags[order_id] = order.simulate
    assert flags == {manual: False, simulated: True, by_default: True}
    replay = await store.place_order(
        [line("pizza", 1)],
        idempotency_key="manual",
        request_hash="h",
        events=no_events,
        simulate=False,
    )
    assert replay.replayed and replay.order.id == manual and replay.order.simulate is False


async def test_status_transitions_carry_the_orders_flag(menu_store: Store) -> None:
    store = menu_store
    seen: list[tuple[str, str, bool]] = []

    def record(transition: StatusTransition) -> list[OutboxMessage]:
        seen.append((transition.order_id, transition.status, transition.simulate))
        return []

    manual = await place(store, simulate=False)
    simulated = await place(store, simulate=True)
    for order_id in (manual, simulated):
        assert (await store.update_order_status(order_id, "confirmed", utc_now(), record)).changed
        delivery = (await store.create_delivery(order_id)).delivery
        change = await store.update_delivery_status(delivery.id, "on_the_way", utc_now(), record)
        assert change.changed
    assert seen == [
        (manual, "confirmed", False),
        (manual, "on_the_way", False),
        (simulated, "confirmed", True),
        (simulated, "on_the_way", True),
    ]


async def test_recent_orders_lists_the_newest_first(menu_store: Store) -> None:
    store = menu_store
    assert await store.recent_orders(5) == []
    placed = [await place(store, simulate=n % 2 == 0) for n in range(4)]
    await store.update_order_status(placed[0], "confirmed", utc_now())
    await store.create_delivery(placed[0])

    recent = await store.recent_orders(3)
    assert [order.id for order in recent] == placed[::-1][:3]
    everything = await store.recent_orders(MAX_RECENT_ORDERS)
    assert [order.id for order in everything] == placed[::-1]
    # Each is the whole document, as get_order returns it (status, flag, delivery).
    for order in everything:
        assert order == await store.get_order(order.id)
    oldest = everything[-1]
    assert oldest.status == "confirmed" and oldest.delivery is not None and oldest.simulate


@pytest.mark.parametrize("limit", [0, -1, MAX_RECENT_ORDERS + 1])
async def test_recent_orders_refuses_a_limit_out_of_range(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.recent_orders(limit)


async def check_upgraded(store: Store, old_order: str) -> None:
    """A store reopened on a database of the previous release: the old order reads as
    simulated, a new one keeps its flag, both are listed."""
    old = await store.get_order(old_order)
    assert old is not None and old.simulate is True
    new_order = await place(store, simulate=False)
    new = await store.get_order(new_order)
    assert new is not None and new.simulate is False
    assert [order.id for order in await store.recent_orders(10)] == [new_order, old_order]


async def place_simulated(store: Store) -> str:
    return await place(store, simulate=True)


# What the previous release created: the same tables without the column.
DROP_SIMULATE = ["DROP INDEX orders_created", "ALTER TABLE orders DROP COLUMN simulate"]


async def test_a_sqlite_file_from_before_the_flag_gets_it_and_keeps_its_orders(
    tmp_path: Path,
) -> None:
    await upgrade_sqlite(tmp_path / "old.db", place_simulated, DROP_SIMULATE, check_upgraded)


@pytest.mark.postgres
async def test_a_postgresql_database_from_before_the_flag_gets_it_and_keeps_its_orders(
    postgres_url: str,
) -> None:
    await upgrade_postgres(postgres_url, place_simulated, DROP_SIMULATE, check_upgraded)
