"""An App whose handler sends and then fails or dies: for the derived send-id tests.

``relay`` (group ``relay-group``) handles an ``Order`` by sending one ``Charge`` per
line to ``resend-charges`` and then, depending on the order:

* ``fail_times=k``: raises on its first ``k`` deliveries (so it is retried and sends
  its charges again each time);
* ``die=True``: SIGKILLs its own process on the first delivery, right after sending
  and before the ack (the worker-process test).

``charge`` (group ``charge-group``) applies each charge once: ``HINCRBY`` of
``<order>:<line>`` inside ``event.atomic()`` (with the dedupe mark). So a re-sent
charge with the *same* event id is dropped, and one with a new id would count twice.
"""

from __future__ import annotations

import os
import signal

from orderflow.runtime import App, Record, Stream
from orderflow.runtime.keys import stream_key

ORDERS = "resend-orders"
CHARGES = "resend-charges"
EFFECTS_KEY = stream_key(CHARGES, "effects")  # same Cluster slot as charge-group's marks


class Order(Record, event_type="resend.order.v1"):
    order_id: str
    lines: int = 1
    fail_times: int = 0
    die: bool = False


class Charge(Record, event_type="resend.charge.v1"):
    order_id: str
    line: int


class HandlerFailed(RuntimeError):
    """What ``relay`` raises after sending, on purpose."""


def build_app(name: str = "resend", broker: str | None = None, max_deliveries: int = 5) -> App:
    app = App(name, broker, retry_base=0.01, retry_cap=0.05, claim_idle_ms=300,
              claim_interval=0.1, max_deliveries=max_deliveries)  # fmt: skip
    orders = app.topic(ORDERS, value_type=Order)
    charges = app.topic(CHARGES, value_type=Charge)

    @app.agent(orders, group="relay-group")
    async def relay(stream: Stream[Order]) -> None:
        async for event in stream.events():
            order = event.value
            for line in range(order.lines):
                await charges.send(value=Charge(order_id=order.order_id, line=line))
            if order.die and event.delivery_count == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            if event.delivery_count <= order.fail_times:
                raise HandlerFailed(f"{order.order_id}: delivery {event.delivery_count}")

    @app.agent(charges, group="charge-group")
    async def charge(stream: Stream[Charge]) -> None:
        async for event in stream.events():
            async with event.atomic() as pipe:
                pipe.hincrby(EFFECTS_KEY, f"{event.value.order_id}:{event.value.line}", 1)

    return app


app = build_app()
