"""The store contract for delivery details (``Order.customer``).

Runs against every adapter (conftest: SQLite always, PostgreSQL on the private
server, MongoDB when ``ORDERFLOW_MONGO_URL`` is set). The customer is stored with the
order and returned by ``get_order``, ``recent_orders`` and an idempotent replay;
``create_delivery`` hands it to the delivery service (``recipient``) in its own
transaction; an order placed without one has ``None``; a database of the previous
release is migrated and keeps its orders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orderflow.models.documents import Customer, Order, utc_now
from orderflow.models.store import Store, no_events
from tests.store.factories import line
from tests.store.upgrades import upgrade_postgres, upgrade_sqlite

ADA = Customer(
    name="Ada Lovelace", address="12 St James's Square, London", phone="+44 20 7946 0958"
)
ZOE = Customer(
    name="Zoë «Ünïcødé» O'Brien", address="3 Rue de l'Église, 75004 Paris", phone="06 12 34 56 78"
)


def test_a_bad_customer_is_refused_without_quoting_it() -> None:
    """A ``ValidationError`` ends up in logs and tracebacks: it names the field only."""
    secret = "Zed Q. Privacy-Canary-documents"
    for bad in (
        {"name": secret, "address": "x", "phone": "+44 20 7946 0958"},
        {"name": secret * 10, "address": f"{secret} Street", "phone": "+44 20 7946 0958"},
    ):
        with pytest.raises(ValidationError) as caught:
            Customer.model_validate(bad)
        assert "address" in str(caught.value) or "name" in str(caught.value)
        assert "Privacy-Canary" not in str(caught.value)
        assert "Privacy-Canary" not in repr(caught.value.errors(include_input=False))
    order = {"id": "0" * 32, "lines": [], "total": 0, "status": "created", "history": []}
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({**order, "customer": {"name": secret}})
    assert "Privacy-Canary" not in str(caught.value)


async def place(store: Store, customer: Customer | None, key: str | None = None) -> str:
    result = await store.place_order(
        [line("pizza", 1)],
        idempotency_key=key,
        request_hash="h" if key else None,
        events=no_events,
        customer=customer,
    )
    assert result.order.customer == customer
    return result.order.id


async def test_the_customer_is_stored_and_returned(menu_store: Store) -> None:
    store = menu_store
    ada = await place(store, ADA, key="ada")
    zoe = await place(store, ZOE)
    nobody = await place(store, None)
    found = {}
    for order_id in (ada, zoe, nobody):
        order = await store.get_order(order_id)
        assert order is not None
        found[order_id] = order.customer
    assert found == {ada: ADA, zoe: ZOE, nobody: None}
    recent = {order.id: order.customer for order in await store.recent_orders(10)}
    assert recent == found
    replay = await store.place_order(
        [line("pizza", 1)], idempotency_key="ada", request_hash="h", events=no_events
    )
    assert replay.replayed and replay.order.id == ada and replay.order.customer == ADA


async def test_create_delivery_hands_over_the_recipient(menu_store: Store) -> None:
    store = menu_store
    ada = await place(store, ADA)
    nobody = await place(store, None)
    first = await store.create_delivery(ada)
    assert first.created and first.recipient == ADA
    again = await store.create_delivery(ada)
    assert not again.created and again.recipient == ADA
    assert again.delivery.id == first.delivery.id
    none = await store.create_delivery(nobody)
    assert none.created and none.recipient is None
    # Status changes leave the customer as it was.
    await store.update_order_status(ada, "confirmed", utc_now())
    await store.update_delivery_status(first.delivery.id, "on_the_way", utc_now())
    order = await store.get_order(ada)
    assert order is not None and order.customer == ADA and order.delivery is not None


async def check_upgraded(store: Store, old_order: str) -> None:
    """A store reopened on a database of the previous release: the old order has no
    customer, a new one keeps its own."""
    old = await store.get_order(old_order)
    assert old is not None and old.customer is None
    new_order = await place(store, ADA)
    new = await store.get_order(new_order)
    assert new is not None and new.customer == ADA
    assert [order.id for order in await store.recent_orders(10)] == [new_order, old_order]


DROP_CUSTOMER = [
    f"ALTER TABLE orders DROP COLUMN {column}"
    for column in ("customer_name", "customer_address", "customer_phone")
]


async def place_without_customer(store: Store) -> str:
    return await place(store, None)


async def test_a_sqlite_file_from_before_the_customer_is_migrated(tmp_path: Path) -> None:
    await upgrade_sqlite(tmp_path / "old.db", place_without_customer, DROP_CUSTOMER, check_upgraded)


@pytest.mark.postgres
async def test_a_postgresql_database_from_before_the_customer_is_migrated(
    postgres_url: str,
) -> None:
    await upgrade_postgres(postgres_url, place_without_customer, DROP_CUSTOMER, check_upgraded)
