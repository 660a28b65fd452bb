"""``orderflow seed``: put the demo menu into the store (idempotent).

Items that already exist keep their current stock, so seeding twice (or seeding
a store the demo has been selling from) never resets anything; use ``orderflow
refill`` for that. The Helm chart's init Job runs this command.
"""

from __future__ import annotations

import argparse
import asyncio

from orderflow.agents.settings import get_settings
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import opened_store


async def seed_demo_menu(store_url: str) -> tuple[int, int]:
    """Seed ``DEMO_MENU`` into the store at ``store_url``; (inserted, menu size)."""
    async with opened_store(store_url) as store:
        inserted = await store.seed_menu(DEMO_MENU)
        return inserted, len(await store.list_menu())


def run(args: argparse.Namespace) -> int:
    store_url = args.store_url or get_settings().store_url
    inserted, size = asyncio.run(seed_demo_menu(store_url))
    print(f"seeded {inserted} new item(s); the menu has {size} item(s) ({store_url})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "seed",
        help="insert the demo menu into the store (idempotent)",
        description=(
            f"Insert the {len(DEMO_MENU)}-item demo menu into the store. Items that already"
            " exist are left alone (their stock is not reset), so running it twice is safe."
        ),
    )
    parser.add_argument(
        "--store-url",
        default=None,
        help="store to seed (default: ORDERFLOW_STORE_URL, else sqlite:///.data/orderflow.db)",
    )
    parser.set_defaults(func=run)
