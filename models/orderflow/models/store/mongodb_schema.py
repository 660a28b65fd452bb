"""The MongoDB store's collections: their ``$jsonSchema`` validators, their indexes,
and the check that the server can run transactions at all.

Why validators: they are the last line of defence of the store's invariants. A
negative stock (``stock`` minimum 0), a price that is not an integer or an unknown
status is refused by the server even if the adapter's code were wrong. Every open
applies them (``create_collection``, or ``collMod`` on an existing collection), so
a database created by an older version gets the current rules.

Why the unique indexes: they decide races the transactions cannot -- two requests
with one ``Idempotency-Key`` (partial index, only when a key is present), two
workers creating the delivery of one order.

Not run here (no MongoDB server); ``tests/store/test_mongodb_offline.py`` checks
the validators as data.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid

from orderflow.models.documents import DELIVERY_STATUSES, ORDER_STATUS_RANKS
from orderflow.models.store.errors import StoreUnavailable

Doc = dict[str, Any]

DEFAULT_DATABASE = "orderflow"

_INT = {"bsonType": ["int", "long"]}

VALIDATORS: dict[str, Doc] = {
    "menu": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": [
                "_id",
                "position",
                "name",
                "description",
                "category",
                "price",
                "stock",
                "seed_stock",
            ],
            "properties": {
                "_id": {"bsonType": "string"},
                "name": {"bsonType": "string"},
                "description": {"bsonType": "string"},
                "category": {"bsonType": "string"},
                "position": {**_INT, "minimum": 0},
                "price": {**_INT, "minimum": 0},
                "stock": {**_INT, "minimum": 0},
                "seed_stock": {**_INT, "minimum": 0},
            },
        }
    },
    "orders": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "lines", "total", "status", "status_rank", "history"],
            "properties": {
                "_id": {"bsonType": "string"},
                "total": {**_INT, "minimum": 0},
                "status": {"enum": list(ORDER_STATUS_RANKS)},
                "lines": {"bsonType": "array", "minItems": 1},
                "history": {"bsonType": "array"},
                "simulate": {"bsonType": "bool"},
                # Delivery details (personal data, kept here only); absent without them.
                "customer": {
                    "bsonType": "object",
                    "required": ["name", "address", "phone"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"bsonType": "string"},
                        "address": {"bsonType": "string"},
                        "phone": {"bsonType": "string"},
                    },
                },
            },
        }
    },
    "deliveries": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "order_id", "status", "status_rank", "history"],
            "properties": {
                "_id": {"bsonType": "string"},
                "order_id": {"bsonType": "string"},
                "status": {"enum": list(DELIVERY_STATUSES)},
                "history": {"bsonType": "array"},
            },
        }
    },
    "outbox": {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", "stream", "envelope", "created_at"],
            "properties": {
                "stream": {"bsonType": "string"},
                "envelope": {"bsonType": "string"},
            },
        }
    },
}


@dataclass(frozen=True)
class Collections:
    """The store's four collections, handed to the modules that read and write them."""

    menu: AsyncCollection[Doc]
    orders: AsyncCollection[Doc]
    deliveries: AsyncCollection[Doc]
    outbox: AsyncCollection[Doc]

    @classmethod
    def of(cls, database: AsyncDatabase[Doc]) -> Collections:
        return cls(
            menu=database["menu"],
            orders=database["orders"],
            deliveries=database["deliveries"],
            outbox=database["outbox"],
        )


async def require_transactions(client: AsyncMongoClient[Doc]) -> None:
    """Refuse a standalone server: transactions need a replica set (or mongos)."""
    hello = await client.admin.command("hello")
    if "setName" not in hello and hello.get("msg") != "isdbgrid":
        raise StoreUnavailable(
            "the MongoDB store needs a replica set (transactions); this server is standalone."
            " Start mongod with --replSet and run rs.initiate()"
        )


async def create_schema(database: AsyncDatabase[Doc], collections: Collections) -> None:
    """Create the collections with their validators (or apply them), then the indexes."""
    existing = set(await database.list_collection_names())
    for name, validator in VALIDATORS.items():
        if name in existing:
            await database.command(
                {"collMod": name, "validator": validator, "validationLevel": "strict"}
            )
        else:
            # CollectionInvalid: another process created it meanwhile.
            with contextlib.suppress(CollectionInvalid):
                await database.create_collection(
                    name,
                    validator=validator,
                    validationLevel="strict",
                    validationAction="error",
                )
    await collections.orders.create_index(
        [("idempotency_key", ASCENDING)],
        name="orders_idempotency_key",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    )
    await collections.orders.create_index([("lines.item_id", ASCENDING)], name="orders_item")
    await collections.orders.create_index([("created_at", DESCENDING)], name="orders_created")
    await collections.deliveries.create_index(
        [("order_id", ASCENDING)], name="deliveries_order", unique=True
    )
    await collections.outbox.create_index(
        [("published_at", ASCENDING), ("created_at", ASCENDING)], name="outbox_pending"
    )
    await collections.menu.create_index([("position", ASCENDING)], name="menu_position")
