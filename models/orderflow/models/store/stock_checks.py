"""The stock checks of ``place_order`` that do not depend on the backend (every adapter).

``items`` maps a menu id to its row/document (anything with ``name``, ``price`` and
``stock`` keys: a ``sqlite3.Row``, an asyncpg record or a BSON document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orderflow.models.documents import OrderLineRequest
from orderflow.models.store.errors import OutOfStock, UnknownItem


def wanted_quantities(lines: Sequence[OrderLineRequest]) -> dict[str, int]:
    """Total quantity per item (an item may appear on several lines)."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.item_id] = wanted.get(line.item_id, 0) + line.quantity
    return wanted


def out_of_stock(item_id: str, item: Any, quantity: int) -> OutOfStock:
    return OutOfStock(item_id, item["name"], quantity, int(item["stock"]))


def check_stock(wanted: Mapping[str, int], items: Mapping[str, Any]) -> None:
    """Raise ``UnknownItem`` for missing ids, then ``OutOfStock`` for the first short item."""
    missing = [item_id for item_id in wanted if item_id not in items]
    if missing:
        raise UnknownItem(missing)
    for item_id, quantity in wanted.items():
        item = items[item_id]
        if item["stock"] < quantity:
            raise out_of_stock(item_id, item, quantity)
