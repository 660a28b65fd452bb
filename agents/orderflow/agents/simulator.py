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
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

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
from orderflow.runtime import App, Stream

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

    async def report_order(order_id: str, status: OrderStatus) -> None:
        delay = pick_delay()
        report = OrderStatusReported(order_id=order_id, status=status, at=reported_at(delay))
        await order_status.send(value=report, key=order_id, delay=delay or None)

    async def report_delivery(delivery_id: str, order_id: str, status: DeliveryStatus) -> None:
        delay = pick_delay()
        report = DeliveryStatusReported(
            delivery_id=delivery_id, order_id=order_id, status=status, at=reported_at(delay)
        )
        await delivery_status.send(value=report, key=order_id, delay=delay or None)

    @app.agent(simulate_order, group=SIMULATOR_GROUP)
    async def start_orders(stream: Stream[OrderSimulate]) -> None:
        async for request in stream:
            await report_order(request.order_id, request.status)

    @app.agent(orders, group=SIMULATOR_GROUP)
    async def advance_orders(stream: Stream[OrderStatusUpdated]) -> None:
        async for update in stream:
            successor = NEXT_ORDER_STATUS.get(update.status)
            if successor is not None and update.simulate:
                await report_order(update.order_id, successor)

    @app.agent(simulate_delivery, group=SIMULATOR_GROUP)
    async def start_deliveries(stream: Stream[DeliverySimulate]) -> None:
        async for request in stream:
            await report_delivery(request.delivery_id, request.order_id, request.status)

    @app.agent(deliveries, group=SIMULATOR_GROUP)
    async def advance_deliveries(stream: Stream[DeliveryStatusUpdated]) -> None:
        async for update in stream:
            successor = NEXT_DELIVERY_STATUS.get(update.status)
            if successor is not None and update.simulate:
                await report_delivery(update.delivery_id, update.order_id, successor)

    return app


app = create_simulator_app()
