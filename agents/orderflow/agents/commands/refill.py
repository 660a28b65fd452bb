"""``orderflow refill``: restock every menu item (what the Kubernetes CronJob runs).

Without ``--stock`` each item goes back to its seed level (the store remembers
it); with ``--stock N`` every item is set to N. With ``ORDERFLOW_REDIS_URL`` set, a
``stock.changed.v1`` then tells the gateways, so open shop pages show the new stock.
"""

from __future__ import annotations

import argparse
import asyncio

from orderflow.agents.settings import get_settings
from orderflow.agents.stock_events import announce_stock_change
from orderflow.models.store import opened_store
from orderflow.runtime import App


async def refill_store(store_url: str, stock: int | None, redis_url: str = "") -> int:
    """Restock every item of the store at ``store_url``; returns how many items were touched.

    With ``redis_url``, the change is announced on ``menu-stream`` afterwards (a failed
    announcement is a warning: the refill is done either way).
    """
    async with opened_store(store_url) as store:
        touched = await store.refill(stock)
    if redis_url:
        app = App("refill", broker=redis_url)
        try:
            await announce_stock_change(app, source="refill")
        finally:
            await app.stop()
    return touched


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("stock must be >= 0")
    return value


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    store_url = args.store_url or settings.store_url
    touched = asyncio.run(refill_store(store_url, args.stock, settings.redis_url))
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
