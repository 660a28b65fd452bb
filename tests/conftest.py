"""Fixtures shared by several test areas (the server fixtures come from the plugin
``orderflow.runtime.pytest_plugin``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import Store, opened_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store at ``store_url`` (each area defines its own), seeded with the demo menu."""
    async with opened_store(store_url) as opened:
        await opened.seed_menu(DEMO_MENU)
        yield opened
