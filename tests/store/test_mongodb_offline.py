"""What can be checked about the MongoDB adapter without a MongoDB server.

The full contract runs against a replica set when ORDERFLOW_MONGO_URL is set
(see test_contract.py). Without one, this still proves that the adapter
imports, that the driver accepts every client option it passes (PyMongo
validates option names and values when the client is built), and that an
unreachable server is reported as a store error, not a driver exception.
"""

from __future__ import annotations

import pytest

from models.store import StoreUnavailable, open_store
from models.store.mongodb import VALIDATORS


async def test_unreachable_mongodb_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open the MongoDB store"):
        await open_store("mongodb://127.0.0.1:1/orderflow?serverSelectionTimeoutMS=200")


def test_menu_validator_rejects_negative_stock() -> None:
    stock = VALIDATORS["menu"]["$jsonSchema"]["properties"]["stock"]
    assert stock["minimum"] == 0
    assert "stock" in VALIDATORS["menu"]["$jsonSchema"]["required"]
