"""Fixtures shared by several test areas (the Redis server fixtures come from the plugin
``orderflow.runtime.pytest_plugin``; the private PostgreSQL is started here)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from orderflow.agents.processes import parent_death_signal
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store
from orderflow.models.store.localpostgres import LocalPostgres, PostgresNotFound
from orderflow.runtime import App


class RecycledDatabases:
    """Empty databases on the private server, for one test at a time each.

    ``CREATE DATABASE`` takes about 0.35 s here, emptying a database (its
    ``public`` schema dropped and created again, after whoever is still connected
    is disconnected) about 50 ms; so a database a test is done with is emptied and
    handed to the next test. Every test still gets a database of its own with
    nothing in it.
    """

    def __init__(self, server: LocalPostgres) -> None:
        self.server = server
        self._free: list[str] = []

    def take(self) -> str:
        """The name of an empty database nobody uses."""
        if self._free:
            return self._free.pop()
        name = f"orderflow_test_{uuid.uuid4().hex[:12]}"
        self.server.create_database(name)
        return name

    def give_back(self, name: str) -> None:
        self.server.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        self.server.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", database=name)
        self._free.append(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A private PostgreSQL for the session, started on first use (never someone else's).

    Without the server binaries the PostgreSQL tests fail in CI (``CI`` set: the
    machine should have them, ``.ci/run`` installs them) and are skipped, with the
    same message, on a developer's machine.
    """
    try:
        server = LocalPostgres(preexec_fn=parent_death_signal(signal.SIGINT))
    except PostgresNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: LocalPostgres) -> RecycledDatabases:
    return RecycledDatabases(postgres_server)


@pytest.fixture
def postgres_url(postgres_databases: RecycledDatabases) -> Iterator[str]:
    """An empty database of its own on the private server (emptied afterwards)."""
    name = postgres_databases.take()
    try:
        yield postgres_databases.server.url_for(name)
    finally:
        postgres_databases.give_back(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store at ``store_url`` (each area defines its own), seeded with the demo menu."""
    async with opened_store(store_url) as opened:
        await opened.seed_menu(DEMO_MENU)
        yield opened


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[App]:
    """A runtime App that only publishes (what the API process has): for use cases that
    publish an outbox, e.g. ``place_order(store, publisher, lines)``."""
    app = App("test-publisher", broker=redis_url)
    await app.connect()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def dead_publisher() -> AsyncIterator[App]:
    """A publisher whose Redis is unreachable (nothing listens on port 1)."""
    app = App("dead-publisher", broker="redis://127.0.0.1:1/0")
    try:
        yield app
    finally:
        await app.stop()
