"""The MongoDB store's documents read back as the project's models, and the update that
moves a status forward.

Why a module of its own: every operation of the adapter (orders, deliveries, menu,
cancel) turns documents into the same models, and documents written by older
versions must keep reading -- an order without ``simulate`` was simulated, one
without ``customer`` has no delivery details.
"""

from __future__ import annotations

from orderflow.models.documents import (
    Customer,
    Delivery,
    DeliveryStatusChange,
    MenuItem,
    Order,
    OrderLine,
    OrderStatusChange,
    utc_now,
)
from orderflow.models.store.mongodb_schema import Doc


def status_update(status: str, rank: int, at: str) -> Doc:
    """Set the new status (and its rank) and append it to ``history``."""
    return {
        "$set": {"status": status, "status_rank": rank, "updated_at": utc_now()},
        "$push": {"history": {"status": status, "at": at}},
    }


def menu_item_from(doc: Doc) -> MenuItem:
    return MenuItem(
        id=doc["_id"],
        name=doc["name"],
        description=doc["description"],
        category=doc["category"],
        price=int(doc["price"]),
        stock=int(doc["stock"]),
    )


def delivery_from(doc: Doc) -> Delivery:
    return Delivery(
        id=doc["_id"],
        order_id=doc["order_id"],
        status=doc["status"],
        history=[DeliveryStatusChange(status=h["status"], at=h["at"]) for h in doc["history"]],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def order_from(doc: Doc, delivery_doc: Doc | None) -> Order:
    return Order(
        id=doc["_id"],
        lines=[
            OrderLine(
                item_id=line["item_id"],
                name=line["name"],
                quantity=int(line["quantity"]),
                unit_price=int(line["unit_price"]),
            )
            for line in doc["lines"]
        ],
        total=int(doc["total"]),
        status=doc["status"],
        history=[OrderStatusChange(status=h["status"], at=h["at"]) for h in doc["history"]],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        delivery=None if delivery_doc is None else delivery_from(delivery_doc),
        simulate=doc.get("simulate", True),  # documents from before the flag: simulated
        customer=customer_from(doc),
    )


def customer_from(doc: Doc) -> Customer | None:
    """The order's delivery details; ``None`` when placed without them (or before them)."""
    found = doc.get("customer")
    if found is None:
        return None
    return Customer(name=found["name"], address=found["address"], phone=found["phone"])
