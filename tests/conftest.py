"""Fixtures shared by several test areas (the server fixtures come from the plugin
``orderflow.runtime.pytest_plugin``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store
from orderflow.runtime import App


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
