"""The simulator service: drives orders and deliveries through their lifecycles.

On ``order.simulate.v1{status}`` it reports ``status`` for the order on
order-status-stream after a random delay and, if the status has a successor
(up to ``out_for_delivery``), asks itself for the successor after the same
delay; likewise for deliveries (``on_the_way`` then ``delivered``). Delays come
from ``send(delay=)`` (the runtime's sorted-set scheduler), never from sleeping
inside an agent, so ten thousand orders in flight cost ten thousand sorted-set
members rather than ten thousand sleeping tasks. A delay of 0 sends at once.

Re-processing a request (after a crash) reports the same status twice; the
orders and delivery services apply statuses monotonically, so that is harmless.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agents.runtime import App, Stream
from agents.settings import get_settings
from agents.topics import SIMULATOR_GROUP, build_topics
from models.documents import DeliveryStatus, OrderStatus
from models.events import (
    DeliverySimulate,
    DeliveryStatusReported,
    OrderSimulate,
    OrderStatusReported,
)

SOURCE = "simulator"

NEXT_ORDER_STATUS: dict[str, OrderStatus] = {
    "created": "confirmed",
    "confirmed": "preparing",
    "preparing": "out_for_delivery",
}
"""What the simulator reports after each order status; ``delivered`` comes from delivery."""

NEXT_DELIVERY_STATUS: dict[str, DeliveryStatus] = {
    "waiting": "on_the_way",
    "on_the_way": "delivered",
}


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
    app = App("simulator", broker=broker)
    topics = build_topics(app)
    pick_delay = DelayPicker(delay_min, delay_max, seed=seed)

    @app.agent(topics.simulate_order, group=SIMULATOR_GROUP)
    async def simulate_orders(stream: Stream) -> None:
        async for request in stream:
            assert isinstance(request, OrderSimulate)
            delay = pick_delay()
            send_delay = delay or None
            report = OrderStatusReported(
                order_id=request.order_id, status=request.status, at=reported_at(delay)
            )
            await topics.order_status.send(value=report, key=request.order_id, delay=send_delay)
            successor = NEXT_ORDER_STATUS.get(request.status)
            if successor is not None:
                follow_up = OrderSimulate(order_id=request.order_id, status=successor)
                await topics.simulate_order.send(
                    value=follow_up, key=request.order_id, delay=send_delay
                )

    @app.agent(topics.simulate_delivery, group=SIMULATOR_GROUP)
    async def simulate_deliveries(stream: Stream) -> None:
        async for request in stream:
            assert isinstance(request, DeliverySimulate)
            delay = pick_delay()
            send_delay = delay or None
            report = DeliveryStatusReported(
                delivery_id=request.delivery_id,
                order_id=request.order_id,
                status=request.status,
                at=reported_at(delay),
            )
            await topics.delivery_status.send(
                value=report, key=request.delivery_id, delay=send_delay
            )
            successor = NEXT_DELIVERY_STATUS.get(request.status)
            if successor is not None:
                follow_up = DeliverySimulate(
                    delivery_id=request.delivery_id, order_id=request.order_id, status=successor
                )
                await topics.simulate_delivery.send(
                    value=follow_up, key=request.delivery_id, delay=send_delay
                )

    return app


app = create_simulator_app()
