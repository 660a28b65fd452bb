"""What can be checked about the MongoDB adapter without a MongoDB server.

The full contract runs against a replica set when ORDERFLOW_MONGO_URL is set
(see test_contract.py). Without one, this still proves that the adapter
imports, that the driver accepts every client option it passes (PyMongo
validates option names and values when the client is built), and that an
unreachable server is reported as a store error, not a driver exception.
"""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from orderflow.models.store import Store, StoreUnavailable, open_store
from orderflow.models.store.mongodb import VALIDATORS, MongoStore


async def test_unreachable_mongodb_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open the MongoDB store"):
        await open_store("mongodb://127.0.0.1:1/orderflow?serverSelectionTimeoutMS=200")


def test_menu_validator_rejects_negative_stock() -> None:
    stock = VALIDATORS["menu"]["$jsonSchema"]["properties"]["stock"]
    assert stock["minimum"] == 0
    assert "stock" in VALIDATORS["menu"]["$jsonSchema"]["required"]


def test_the_adapter_has_every_method_of_the_contract() -> None:
    assert issubclass(MongoStore, Store)


async def test_prune_outbox_refuses_a_negative_age_before_asking_the_server() -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", connect=False
    )
    store = MongoStore(client, client["orderflow_offline"])
    try:
        with pytest.raises(ValueError, match="negative"):
            await store.prune_outbox(published_before_seconds=-1)
    finally:
        await store.close()
