"""An event relayed from the outbox later still joins the trace of the request.

The traceparent is part of the envelope, and the outbox row stores the envelope (its
JSON) in the same transaction as the order: the relay publishes it as it was built,
inside the request's span, whenever that is. Redis is unreachable for the placement
here (the order commits, nothing is published), the relay runs afterwards with no
span current, and the entries on the streams still name the request's span.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderflow.agents.outbox import relay_once
from orderflow.agents.placement import place_order
from orderflow.agents.topics import ORDERS_STREAM, SIMULATE_ORDER_STREAM
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.runtime import App, tracing
from orderflow.runtime.tracing_otel import OtelTracing
from tests.system.conftest import envelopes_for_order


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    tracing.install(OtelTracing(provider))
    try:
        yield provider.get_tracer("test")
    finally:
        tracing.install(None)
        provider.shutdown()


async def test_a_relayed_outbox_event_carries_the_requests_span(
    tracer: trace.Tracer,
    store: Store,
    redis_client: aioredis.Redis,
    dead_publisher: App,
    publisher: App,
) -> None:
    with tracer.start_as_current_span("POST /api/v1/orders") as request_span:
        result = await place_order(
            store, dead_publisher, [OrderLineRequest(item_id="funghi", quantity=1)]
        )
    assert len(await store.outbox_pending(limit=100)) == 2  # nothing was published

    assert trace.get_current_span() is trace.INVALID_SPAN  # the relay runs outside it
    assert await relay_once(publisher, store, min_age_seconds=0) == 2

    context = request_span.get_span_context()
    expected = f"{context.trace_id:032x}-{context.span_id:016x}"
    created = await envelopes_for_order(redis_client, ORDERS_STREAM, result.order.id)
    simulate = await envelopes_for_order(redis_client, SIMULATE_ORDER_STREAM, result.order.id)
    assert len(created) == len(simulate) == 1
    for envelope in (created[0], simulate[0]):
        assert envelope.traceparent is not None
        assert envelope.traceparent.split("-")[1:3] == expected.split("-")
