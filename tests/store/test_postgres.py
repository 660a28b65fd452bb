"""What the PostgreSQL adapter adds to the contract: URLs, schema, failures, NOTIFY.

The contract itself runs in ``test_contract.py`` (the ``postgresql`` half). Here:
``open_store`` dispatch and the pool parameters of the URL, a schema that is safe
to create from several processes at once and that refuses what the code never
writes, a newer schema or a dead server as ``StoreUnavailable``, recovery after
the server drops every connection, and ``wait_for_outbox`` woken by the
``NOTIFY`` of another store's commit.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import sys
from pathlib import Path

import asyncpg
import pytest

from orderflow.models.documents import MenuItem, utc_now
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import StoreUnavailable, open_store
from orderflow.models.store.localpostgres import LocalPostgres, find_postgres_bindir
from orderflow.models.store.postgres import PostgresStore
from orderflow.models.store.postgres_pool import split_postgres_url
from orderflow.runtime.localserver import free_port
from tests.store.factories import line, order_events, order_status_events

pytestmark = pytest.mark.postgres

SOUP = MenuItem(id="soup", name="Soup", category="s", price=5, stock=2)


def test_url_pool_parameters_are_read_and_removed() -> None:
    dsn, sizes = split_postgres_url(
        "postgresql://u:p@db:5432/orderflow?pool_max_size=20&application_name=api&pool_min_size=2"
    )
    assert dsn == "postgresql://u:p@db:5432/orderflow?application_name=api"
    assert sizes == {"pool_min_size": 2, "pool_max_size": 20}
    assert split_postgres_url("postgres://db/x") == ("postgres://db/x", {})
    with pytest.raises(ValueError):
        split_postgres_url("sqlite:///x.db")


async def test_open_store_accepts_both_schemes_and_the_schema_is_idempotent(
    postgres_url: str,
) -> None:
    first = await open_store(postgres_url + "?pool_max_size=3")
    assert isinstance(first, PostgresStore)
    await first.ping()
    await first.seed_menu([SOUP])
    second = await open_store(postgres_url.replace("postgresql://", "postgres://", 1))
    assert [item.id for item in await second.list_menu()] == ["soup"]  # schema again, data kept
    for store in (first, second):
        await store.close()


async def test_without_asyncpg_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "orderflow.models.store.postgres")
    with pytest.raises(StoreUnavailable, match=r"orderflow\[postgres\]"):
        await open_store("postgresql://127.0.0.1/x")


async def test_several_processes_may_create_the_schema_at_once(postgres_url: str) -> None:
    """Concurrent CREATE ... IF NOT EXISTS can fail on the catalog; the advisory lock serialises."""
    stores = await asyncio.gather(*(PostgresStore.open(postgres_url) for _ in range(6)))
    seeded = await asyncio.gather(*(store.seed_menu(DEMO_MENU) for store in stores))
    assert sum(seeded) == len(DEMO_MENU)  # each item inserted once, by one of them
    positions = [item.id for item in await stores[0].list_menu()]
    assert positions == [item.id for item in DEMO_MENU]
    for store in stores:
        await store.close()


async def test_the_schema_refuses_negative_stock_and_duplicates(postgres_url: str) -> None:
    """Defence in depth: even SQL that bypasses the store cannot oversell or double up."""
    store = await PostgresStore.open(postgres_url)
    await store.seed_menu([SOUP])
    order = (
        await store.place_order(
            [line("soup", 1)], idempotency_key="k", request_hash="h", events=order_events
        )
    ).order
    await store.create_delivery(order.id)
    await store.close()
    raw = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await raw.execute("UPDATE menu_items SET stock = stock - 3 WHERE id = 'soup'")
        with pytest.raises(asyncpg.UniqueViolationError, match="orders_idempotency_key"):
            await raw.execute(
                "INSERT INTO orders VALUES ($1, 'created', 0, 0, 't', 't', 'k', 'h')", "b" * 32
            )
        with pytest.raises(asyncpg.UniqueViolationError, match="deliveries_order"):
            await raw.execute(
                "INSERT INTO deliveries VALUES ($1, $2, 'waiting', 0, 't', 't')", "d" * 32, order.id
            )
    finally:
        await raw.close()


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    await (await PostgresStore.open(postgres_url)).close()
    raw = await asyncpg.connect(postgres_url)
    try:
        await raw.execute("UPDATE orderflow_schema SET version = 99")
    finally:
        await raw.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        await PostgresStore.open(postgres_url)


async def test_no_server_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await PostgresStore.open(f"postgresql://postgres@127.0.0.1:{free_port()}/x")


async def test_closed_store_refuses_work(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.ping()


async def test_the_store_recovers_when_the_server_drops_its_connections(
    postgres_url: str, postgres_server: LocalPostgres
) -> None:
    store = await PostgresStore.open(postgres_url, min_size=2, max_size=2)
    await store.seed_menu([SOUP])
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    # A dropped connection may fail the call that finds it (as StoreUnavailable, never
    # a driver error); the pool replaces it and the next calls work.
    for _ in range(3):
        try:
            await store.ping()
        except StoreUnavailable:
            continue
    assert [item.id for item in await store.list_menu()] == ["soup"]
    await store.close()


async def test_wait_for_outbox_is_woken_by_another_stores_commit(postgres_url: str) -> None:
    relay = await PostgresStore.open(postgres_url)
    api = await PostgresStore.open(postgres_url)  # another pool: another process, for NOTIFY
    await api.seed_menu([SOUP])
    assert await relay.wait_for_outbox(0.0)  # just started listening: "look now"
    assert not await relay.wait_for_outbox(0.05)  # nothing committed since

    woken = asyncio.create_task(relay.wait_for_outbox(30))
    await asyncio.sleep(0.05)
    assert not woken.done()
    await api.place_order([line("soup", 1)], idempotency_key=None, request_hash=None,
                          events=order_events)  # fmt: skip
    assert await asyncio.wait_for(woken, 10)

    # Writes without outbox rows announce nothing; a status change with events does.
    await api.set_stock("soup", 5)
    order_id = (await api.outbox_pending())[0].envelope.payload["order_id"]
    await api.update_order_status(order_id, "confirmed", utc_now())
    assert not await relay.wait_for_outbox(0.2)
    await api.update_order_status(order_id, "preparing", utc_now(), order_status_events)
    assert await relay.wait_for_outbox(10)
    for store in (relay, api):
        await store.close()


def test_the_private_server_never_runs_as_root(postgres_server: LocalPostgres) -> None:
    """Debian's newest version (else initdb on PATH), as ``nobody`` when we are root."""
    assert postgres_server.bindir == find_postgres_bindir()
    assert postgres_server.process is not None
    status = Path(f"/proc/{postgres_server.process.pid}/status").read_text()
    match = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert match is not None
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert int(match.group(1)) == expected
