"""The simulator service: drives orders and deliveries through their lifecycles.

It plays the kitchen and the courier, and like them it reacts to what already
happened:

* ``order.simulate.v1{s}`` (simulate-order-stream; the order transaction asks
  for ``confirmed``): report ``s`` on order-status-stream after a random delay.
* ``order.status_updated.v1{s}`` (orders-stream): the orders service persisted
  ``s``; report its successor (``confirmed`` -> ``preparing`` ->
  ``out_for_delivery``) after a random delay. ``delivered`` comes from the
  delivery service.
* ``delivery.simulate.v1{s}`` (simulate-delivery-stream; the delivery
  transaction asks for ``on_the_way``) and ``delivery.status_updated.v1{on_the_way}``
  (deliveries-stream): the same for deliveries, up to ``delivered``.

An order placed with ``simulate: false`` is never started (its transaction writes no
``order.simulate.v1``, its delivery's no ``delivery.simulate.v1``), and the status
updates of such an order carry ``simulate: false``, on which the two chaining agents
do nothing: an operator reports each step instead (the console), on the same streams.

Chaining each step on the *persisted* previous status (rather than scheduling
the whole chain at once) means a report can never overtake its predecessor,
whatever the delays, the scheduler's timing or the number of orders-service
replicas: the order's history always holds every status, in order.

A cancelled order (``order.cancelled.v1``, which no agent here accepts) is never
advanced: nothing chains on it, and the one report that may already be scheduled for
it (``confirmed``, or ``preparing``) is dropped by the store when the orders service
applies it, and counted (:mod:`orderflow.agents.cancellation`).

Delays come from ``send(delay=)`` (the runtime's sorted-set scheduler), never
from sleeping inside an agent, so ten thousand orders in flight cost ten
thousand sorted-set members rather than ten thousand sleeping tasks. A delay of
0 sends at once. Re-processing an event (after a crash) reports the same status
twice; statuses are applied monotonically, so that is harmless.

Each agent takes the events that have already arrived together (``stream.take_events``):
the reports are built one event at a time, each in its event's scope (so each gets the
derived id of handling that event alone), and the undelayed ones go out in ONE
pipelined round trip; a delayed one goes to the scheduler as before.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from orderflow.agents.settings import get_settings
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    SIMULATE_ORDER_STREAM,
    SIMULATOR_GROUP,
    declare_topic,
)
from orderflow.models.documents import DeliveryStatus, OrderStatus
from orderflow.models.events import (
    DeliverySimulate,
    DeliveryStatusReported,
    DeliveryStatusUpdated,
    OrderSimulate,
    OrderStatusReported,
    OrderStatusUpdated,
)
from orderflow.runtime import App, Envelope, Record, Stream, Topic

NEXT_ORDER_STATUS: dict[str, OrderStatus] = {
    "confirmed": "preparing",
    "preparing": "out_for_delivery",
}
"""What the simulator reports once an order status is persisted."""

NEXT_DELIVERY_STATUS: dict[str, DeliveryStatus] = {
    "on_the_way": "delivered",
}
"""What the simulator reports once a delivery status is persisted."""


class DelayPicker:
    """Uniform random delays in ``[low, high]`` seconds (bounds from settings by default)."""

    def __init__(
        self, low: float | None = None, high: float | None = None, *, seed: int | None = None
    ) -> None:
        self.low = low
        self.high = high
        self._random = random.Random(seed)

    def __call__(self) -> float:
        settings = get_settings()
        low = settings.simulator_delay_min if self.low is None else self.low
        high = settings.simulator_delay_max if self.high is None else self.high
        low = max(0.0, low)
        high = max(low, high)  # a maximum below the minimum means "exactly the minimum"
        return low if high == low else self._random.uniform(low, high)


def reported_at(delay: float) -> str:
    """When the reported status takes effect: now plus the delay, UTC ISO-8601."""
    moment = datetime.now(UTC) + timedelta(seconds=delay)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


Outgoing = tuple[Topic[Any], Envelope, float]
"""A report to send: its topic, its envelope (built while handling its cause), its delay."""

T = TypeVar("T", bound=Record)
Reaction = Callable[[T], Outgoing | None]
"""What the simulator reports on an event (``None``: nothing)."""


async def send_all(app: App, outgoing: Sequence[Outgoing]) -> None:
    """Send the reports of a list: the undelayed ones in one pipelined round trip, once
    per event id (a re-run handler's reports carry the same ids, so its copies are not
    appended, and the services' first deliveries skip the dedupe check:
    :mod:`orderflow.runtime.fresh_check`), each delayed one through the scheduler."""
    now = [(topic, envelope) for topic, envelope, delay in outgoing if not delay]
    if now:
        await app.send_envelopes(now, once=True)
    for topic, envelope, delay in outgoing:
        if delay:
            await topic.send_envelope(envelope, delay=delay)


def create_simulator_app(
    *,
    broker: str | None = None,
    delay_min: float | None = None,
    delay_max: float | None = None,
    seed: int | None = None,
) -> App:
    """Build the simulator app; ``delay_min``/``delay_max`` override the settings."""
    app = App("simulator", broker=broker, settings=get_settings())
    simulate_order = declare_topic(app, SIMULATE_ORDER_STREAM, OrderSimulate)
    simulate_delivery = declare_topic(app, SIMULATE_DELIVERY_STREAM, DeliverySimulate)
    orders = declare_topic(app, ORDERS_STREAM, OrderStatusUpdated)
    deliveries = declare_topic(app, DELIVERIES_STREAM, DeliveryStatusUpdated)
    order_status = declare_topic(app, ORDER_STATUS_STREAM, OrderStatusReported)
    delivery_status = declare_topic(app, DELIVERY_STATUS_STREAM, DeliveryStatusReported)
    pick_delay = DelayPicker(delay_min, delay_max, seed=seed)

    def order_report(order_id: str, status: OrderStatus) -> Outgoing:
        delay = pick_delay()
        report = OrderStatusReported(order_id=order_id, status=status, at=reported_at(delay))
        return order_status, order_status.envelope(report, key=order_id), delay

    def delivery_report(delivery_id: str, order_id: str, status: DeliveryStatus) -> Outgoing:
        delay = pick_delay()
        report = DeliveryStatusReported(
            delivery_id=delivery_id, order_id=order_id, status=status, at=reported_at(delay)
        )
        return delivery_status, delivery_status.envelope(report, key=order_id), delay

    async def report_all(stream: Stream[T], react: Reaction[T]) -> None:
        """For each list of the events already arrived: what ``react`` reports for each
        (built in the event's own scope: its derived ids), sent in one round trip."""
        async for events in stream.take_events(get_settings().agent_list_max_events):
            outgoing: list[Outgoing] = []
            for event in events:
                with stream.handling(event):
                    report = react(event.value)
                if report is not None:
                    outgoing.append(report)
            await send_all(app, outgoing)

    @app.agent(simulate_order, group=SIMULATOR_GROUP)
    async def start_orders(stream: Stream[OrderSimulate]) -> None:
        await report_all(stream, lambda request: order_report(request.order_id, request.status))

    def next_order_report(update: OrderStatusUpdated) -> Outgoing | None:
        successor = NEXT_ORDER_STATUS.get(update.status)
        if successor is None or not update.simulate:
            return None
        return order_report(update.order_id, successor)

    @app.agent(orders, group=SIMULATOR_GROUP)
    async def advance_orders(stream: Stream[OrderStatusUpdated]) -> None:
        await report_all(stream, next_order_report)

    @app.agent(simulate_delivery, group=SIMULATOR_GROUP)
    async def start_deliveries(stream: Stream[DeliverySimulate]) -> None:
        await report_all(
            stream,
            lambda request: delivery_report(request.delivery_id, request.order_id, request.status),
        )

    def next_delivery_report(update: DeliveryStatusUpdated) -> Outgoing | None:
        successor = NEXT_DELIVERY_STATUS.get(update.status)
        if successor is None or not update.simulate:
            return None
        return delivery_report(update.delivery_id, update.order_id, successor)

    @app.agent(deliveries, group=SIMULATOR_GROUP)
    async def advance_deliveries(stream: Stream[DeliveryStatusUpdated]) -> None:
        await report_all(stream, next_delivery_report)

    return app


app = create_simulator_app()
