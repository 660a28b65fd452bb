"""``orderflow refill``: restock every menu item (what the Kubernetes CronJob runs).

Without ``--stock`` each item goes back to its seed level (the store remembers
it); with ``--stock N`` every item is set to N.
"""

from __future__ import annotations

import argparse
import asyncio

from orderflow.agents.settings import get_settings
from orderflow.models.store import opened_store


async def refill_store(store_url: str, stock: int | None) -> int:
    """Restock every item of the store at ``store_url``; returns how many items were touched."""
    async with opened_store(store_url) as store:
        return await store.refill(stock)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("stock must be >= 0")
    return value


def run(args: argparse.Namespace) -> int:
    store_url = args.store_url or get_settings().store_url
    touched = asyncio.run(refill_store(store_url, args.stock))
    level = "its seed level" if args.stock is None else str(args.stock)
    print(f"restocked {touched} item(s) to {level} ({store_url})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "refill",
        help="restock every menu item (the CronJob's command)",
        description=(
            "Restock every menu item: back to the stock it was seeded with, or to --stock N."
            " Safe to run while orders are being placed (one store transaction)."
        ),
    )
    parser.add_argument(
        "--stock",
        type=_non_negative,
        default=None,
        metavar="N",
        help="set every item's stock to N instead of its seed level",
    )
    parser.add_argument(
        "--store-url",
        default=None,
        help="store to refill (default: ORDERFLOW_STORE_URL, else sqlite:///.data/orderflow.db)",
    )
    parser.set_defaults(func=run)
