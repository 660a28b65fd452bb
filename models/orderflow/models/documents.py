"""Domain documents: what the store keeps and what the API returns.

They are strict on purpose (unknown fields rejected, no type coercion, ids and
quantities constrained) so that a value that reaches a store adapter is already
well-formed: the web layer turns validation errors into 422 problems, and an
operator-shaped value such as ``{"$gt": ""}`` can never become an id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MENU_ITEM_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""Menu ids are lowercase slugs ("margherita", "tiramisu-classico")."""

ENTITY_ID_PATTERN = r"^[0-9a-f]{32}$"
"""Order and delivery ids are ``uuid4().hex``: 32 lowercase hex digits."""

MenuItemId = Annotated[str, StringConstraints(pattern=MENU_ITEM_ID_PATTERN)]
EntityId = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
Timestamp = Annotated[str, StringConstraints(min_length=10, max_length=40)]
"""UTC ISO-8601 text, as produced by :func:`utc_now`."""

OrderStatus = Literal["created", "confirmed", "preparing", "out_for_delivery", "delivered"]
OrderState = Literal[
    "created", "confirmed", "preparing", "out_for_delivery", "delivered", "cancelled"
]
"""Every status an order can have: the linear lifecycle (``OrderStatus``) or ``cancelled``."""
DeliveryStatus = Literal["waiting", "on_the_way", "delivered"]

ORDER_STATUSES: tuple[OrderStatus, ...] = (
    "created",
    "confirmed",
    "preparing",
    "out_for_delivery",
    "delivered",
)
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("waiting", "on_the_way", "delivered")


CANCELLED: Literal["cancelled"] = "cancelled"
CANCELLABLE_STATUSES: tuple[OrderStatus, ...] = ("created", "confirmed")
"""An order can be cancelled only before the kitchen starts (``preparing``)."""

ORDER_STATUS_RANKS: dict[str, int] = {
    **{status: rank for rank, status in enumerate(ORDER_STATUSES)},
    CANCELLED: len(ORDER_STATUSES),
}
"""``cancelled`` is outside the linear lifecycle but ranks above every status of it.

Every monotonic rule (the stores' ``status_rank < new``, the status cache's merge, the
tracking views) applies a status only when its rank grows, so this one rank makes
``cancelled`` terminal everywhere: nothing is ever applied after it, and a cancel that
arrives before an older update still wins. Only ``Store.cancel_order`` sets it, and
only from a ``CANCELLABLE_STATUSES`` status.
"""
STATUS_OF_ORDER_RANK: dict[int, str] = {rank: status for status, rank in ORDER_STATUS_RANKS.items()}


def order_status_rank(status: str) -> int:
    """Position in the order lifecycle (``cancelled``: above all); a transition is
    applied only if it increases."""
    try:
        return ORDER_STATUS_RANKS[status]
    except KeyError:
        raise ValueError(f"unknown order status {status!r}") from None


def delivery_status_rank(status: str) -> int:
    """Position in the delivery lifecycle; a transition is applied only if it increases."""
    try:
        return DELIVERY_STATUSES.index(status)
    except ValueError:
        raise ValueError(f"unknown delivery status {status!r}") from None


def utc_now() -> str:
    """Current time as UTC ISO-8601 with a ``Z`` suffix (microsecond precision)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Document(BaseModel):
    """Base for every document: strict types, unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=True)


class MenuItem(Document):
    id: MenuItemId
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    category: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    price: Annotated[int, Field(ge=0, description="minor units (cents)")]
    stock: Annotated[int, Field(ge=0)]


class OrderLineRequest(Document):
    """One line of an order as asked for: which item, how many."""

    item_id: MenuItemId
    quantity: Annotated[int, Field(gt=0)]


class OrderLine(Document):
    """One line of a placed order, with the name and price at the time of ordering."""

    item_id: MenuItemId
    name: str
    quantity: Annotated[int, Field(gt=0)]
    unit_price: Annotated[int, Field(ge=0)]


class OrderStatusChange(Document):
    status: OrderState
    at: Timestamp


class DeliveryStatusChange(Document):
    status: DeliveryStatus
    at: Timestamp


class Customer(Document):
    """Who receives an order and where: personal data, so it lives only in the store.

    The web layer validates and trims it (:mod:`orderflow.web.validation`); these
    bounds repeat the outer limits so that no adapter ever holds an oversized value.
    ``repr=False`` keeps the values out of any ``repr`` -- a log line or a traceback
    that formats an ``Order`` shows ``customer=...`` hidden, not the person -- and
    ``hide_input_in_errors`` keeps them out of a ``ValidationError``'s message (a value
    that breaks a bound is named by its field, not quoted).
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=100), Field(repr=False)]
    address: Annotated[str, StringConstraints(min_length=5, max_length=300), Field(repr=False)]
    phone: Annotated[str, StringConstraints(min_length=6, max_length=32), Field(repr=False)]


class Delivery(Document):
    id: EntityId
    order_id: EntityId
    status: DeliveryStatus
    history: list[DeliveryStatusChange]
    created_at: Timestamp
    updated_at: Timestamp


class Order(Document):
    model_config = ConfigDict(hide_input_in_errors=True)  # it may hold a Customer

    id: EntityId
    lines: Annotated[list[OrderLine], Field(min_length=1)]
    total: Annotated[int, Field(ge=0)]
    status: OrderState
    history: list[OrderStatusChange]
    created_at: Timestamp
    updated_at: Timestamp
    delivery: Delivery | None = None
    simulate: bool = True
    """False: the simulator leaves the order alone; an operator moves it on from the
    console. Defaults to True so documents stored before the flag existed still load."""
    customer: Annotated[Customer | None, Field(repr=False)] = None
    """Name, address and phone for the courier; ``None`` for an order placed without them
    (the API keeps accepting those) and for orders stored before the field existed."""
