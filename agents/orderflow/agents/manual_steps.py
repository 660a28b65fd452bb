"""Moving a non-simulated order on by hand: the use case behind the console's "advance".

An order placed with ``simulate: false`` waits at ``created``; an operator moves it one
step at a time. Each step is the very report the simulator would send, on the same
stream -- ``order.status_reported.v1`` on order-status-stream for the order's own
steps, ``delivery.status_reported.v1`` on delivery-status-stream for its delivery's --
so the orders and delivery services do what they always do: apply it monotonically,
write ``order.status_updated.v1`` and friends to the outbox, create the delivery when
the order goes ``out_for_delivery``, and report the order ``delivered`` when its
delivery is. Nothing here writes the store.

The steps, in order (a delivery status name never equals an order's, except the
last, which is the same event for both)::

    created -> confirmed -> preparing -> out_for_delivery
      (the delivery service creates the delivery: waiting)
    delivery waiting -> on_the_way -> delivered (-> the order is delivered)

The next step is computed from the stored order, so a retried request after the
status moved would go one step further; an ``expected`` step (the one the operator
saw) turns such a stale retry into a refusal instead. A cancelled order has no next
step (refused with ``cancelled``): even a report sent anyway would be dropped by the
store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from orderflow.agents.outbox import outbox_message, outbox_topic
from orderflow.agents.topics import DELIVERY_STATUS_STREAM, ORDER_STATUS_STREAM
from orderflow.models.documents import CANCELLED, Order, utc_now
from orderflow.models.events import DeliveryStatusReported, OrderStatusReported
from orderflow.runtime import App

log = logging.getLogger(__name__)

OPERATOR_SOURCE = "operator"
"""The envelope's ``source`` of a hand-made report (the simulator's is ``simulator``)."""

ManualStep = Literal["confirmed", "preparing", "out_for_delivery", "on_the_way", "delivered"]
MANUAL_STEPS: tuple[ManualStep, ...] = (
    "confirmed",
    "preparing",
    "out_for_delivery",
    "on_the_way",
    "delivered",
)

_NEXT_ORDER_STEP: dict[str, ManualStep] = {
    "created": "confirmed",
    "confirmed": "preparing",
    "preparing": "out_for_delivery",
}
_NEXT_DELIVERY_STEP: dict[str, ManualStep] = {"waiting": "on_the_way", "on_the_way": "delivered"}

RefusalReason = Literal["simulated", "delivered", "cancelled", "pending", "stale"]


class StepRefused(Exception):
    """No step can be taken now; ``reason`` says why, ``detail`` says it to a person."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StepTaken:
    """What ``advance`` reported: ``step`` on ``stream`` as event ``event_id``."""

    order_id: str
    step: ManualStep
    stream: str
    event_id: str


def next_step(order: Order) -> ManualStep:
    """The step an operator may take next, or ``StepRefused``.

    ``pending``: the services have not yet caught up with the previous step (the
    delivery is not created yet, or the order's ``delivered`` report is on its way).
    """
    if order.simulate:
        raise StepRefused(
            "simulated",
            f"Order {order.id} is simulated: the simulator moves it, not an operator.",
        )
    if order.status == "delivered":
        raise StepRefused("delivered", f"Order {order.id} is delivered: its lifecycle is over.")
    if order.status == CANCELLED:
        raise StepRefused(
            "cancelled",
            f"Order {order.id} was cancelled by the customer: a cancelled order never moves again.",
        )
    if order.status in _NEXT_ORDER_STEP:
        return _NEXT_ORDER_STEP[order.status]
    delivery = order.delivery
    if delivery is None:
        raise StepRefused(
            "pending",
            f"Order {order.id} is out for delivery but its delivery is not created yet; "
            "try again in a moment.",
        )
    if delivery.status in _NEXT_DELIVERY_STEP:
        return _NEXT_DELIVERY_STEP[delivery.status]
    raise StepRefused(
        "pending",
        f"The delivery of order {order.id} is delivered; the order follows in a moment.",
    )


def available_step(order: Order) -> ManualStep | None:
    """``next_step``, or None where it would refuse: what the console offers as a button."""
    try:
        return next_step(order)
    except StepRefused:
        return None


async def advance(
    publisher: App,
    order: Order,
    *,
    expected: ManualStep | None = None,
    correlation_id: str | None = None,
) -> StepTaken:
    """Report the next step of ``order`` as the simulator would, at once.

    Raises ``StepRefused`` (``stale`` when ``expected`` is given and is not the next
    step). Redis errors propagate: the step may or may not have reached the stream (a
    reply lost after the append looks the same as a refused connection).
    """
    step = next_step(order)
    if expected is not None and expected != step:
        raise StepRefused(
            "stale",
            f"Order {order.id}'s next step is {step}, not {expected}: "
            "it has moved since you looked.",
        )
    at = utc_now()
    if step in _NEXT_ORDER_STEP.values():
        stream = ORDER_STATUS_STREAM
        message = outbox_message(
            stream,
            OrderStatusReported(order_id=order.id, status=step, at=at),
            source=OPERATOR_SOURCE,
            key=order.id,
            correlation_id=correlation_id,
        )
    else:
        assert order.delivery is not None  # next_step returned a delivery step
        stream = DELIVERY_STATUS_STREAM
        delivery_step = "on_the_way" if step == "on_the_way" else "delivered"
        message = outbox_message(
            stream,
            DeliveryStatusReported(
                delivery_id=order.delivery.id, order_id=order.id, status=delivery_step, at=at
            ),
            source=OPERATOR_SOURCE,
            key=order.id,
            correlation_id=correlation_id,
        )
    await outbox_topic(publisher, stream).send_envelope(message.envelope)
    log.info("order %s: operator reported %s on %s", order.id, step, stream)
    event_id = message.envelope.event_id
    return StepTaken(order_id=order.id, step=step, stream=stream, event_id=event_id)
