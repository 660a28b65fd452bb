"""Tracing in the runtime: traceparent in the envelope, a span per event handled.

The spans go to OpenTelemetry's in-memory exporter (the SDK itself, nothing mocked);
the events go through a real private server. The cross-process chain of one order
(API -> orders -> simulator -> delivery) is tests/system/test_tracing_processes.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orderflow.runtime import App, Envelope, Record, tracing
from orderflow.runtime.decoding import EntryDecoder, is_envelope_layout
from orderflow.runtime.localserver import free_port
from orderflow.runtime.testing import eventually, run_app
from orderflow.runtime.tracing_otel import OtelTracing
from tests.runtime.worker_process import REPO

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Step(Record, event_type="rt.trace.step.v1"):
    """One record type on every stream here: the spans tell the agents apart."""

    order_id: str


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, spans kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(OtelTracing(provider))
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def names(envelope: Envelope) -> tuple[int, int]:
    """(trace id, parent span id) of an envelope's ``traceparent`` (version 00)."""
    assert envelope.traceparent is not None
    version, trace_hex, span_hex, _flags = envelope.traceparent.split("-")
    assert version == "00"
    return int(trace_hex, 16), int(span_hex, 16)


async def test_a_send_while_handling_is_a_child_of_the_handler_span_across_retry_and_delay(
    spans: InMemorySpanExporter, redis_client, redis_url
) -> None:
    app = App("rt-trace", broker=redis_url, block_ms=50, retry_base=0.01, scheduler_interval=0.05)
    placed = app.topic("rt-trace-placed", value_type=Step)
    packed = app.topic("rt-trace-packed", value_type=Step)
    shipped = app.topic("rt-trace-shipped", value_type=Step)
    seen: dict[str, Envelope] = {}
    ship_runs: list[int] = []

    @app.agent(placed, group="packers")
    async def pack(stream):
        async for event in stream.events():
            seen["placed"] = event.envelope
            await packed.send(value=Step(order_id=event.value.order_id))

    @app.agent(packed, group="shippers")
    async def ship(stream):
        async for event in stream.events():
            ship_runs.append(event.delivery_count)
            if event.delivery_count == 1:
                raise RuntimeError("the van is late")
            seen["packed"] = event.envelope
            await shipped.send(value=Step(order_id=event.value.order_id), delay=0.01)

    @app.agent(shipped, group="trackers")
    async def track(stream):
        async for event in stream.events():
            seen["shipped"] = event.envelope

    tracer = trace.get_tracer("test", tracer_provider=tracing.active.provider)  # type: ignore[union-attr]
    async with run_app(app):
        with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root:
            await placed.send(value=Step(order_id="o-1"), key="o-1")
        await eventually(lambda: "shipped" in seen)
        await eventually(
            lambda: len(by_name(spans.get_finished_spans(), "track rt.trace.step.v1")) == 1
        )

    finished = spans.get_finished_spans()
    [request] = by_name(finished, "POST /orders")
    [pack_span] = by_name(finished, "pack rt.trace.step.v1")
    ship_spans = by_name(finished, "ship rt.trace.step.v1")
    [track_span] = by_name(finished, "track rt.trace.step.v1")
    assert ship_runs == [1, 2] and len(ship_spans) == 2
    failed, retried = sorted(
        ship_spans, key=lambda s: str((s.attributes or {})["orderflow.delivery_count"])
    )

    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in finished if s.context} == {trace_id}
    assert parent_id(pack_span) == span_id(request)
    assert parent_id(failed) == parent_id(retried) == span_id(pack_span)
    assert parent_id(track_span) == span_id(retried)  # through the delayed-send path too
    assert pack_span.kind == SpanKind.CONSUMER

    # Each envelope names the span current when it was built.
    assert names(seen["placed"]) == (trace_id, span_id(request))
    assert names(seen["packed"]) == (trace_id, span_id(pack_span))
    assert names(seen["shipped"]) == (trace_id, span_id(retried))

    attributes = dict(pack_span.attributes or {})
    assert attributes["orderflow.stream"] == "rt-trace-placed"
    assert attributes["orderflow.group"] == "packers"
    assert attributes["orderflow.event_id"] == seen["placed"].event_id
    assert attributes["orderflow.event_type"] == "rt.trace.step.v1"
    assert attributes["orderflow.delivery_count"] == 1
    assert str(attributes["orderflow.entry_id"]).count("-") == 1  # a stream entry id

    assert failed.status.status_code == StatusCode.ERROR
    assert "the van is late" in (failed.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]
    assert retried.status.status_code == StatusCode.UNSET


async def test_take_lists_get_a_span_per_event(spans: InMemorySpanExporter, redis_url) -> None:
    app = App("rt-trace-take", broker=redis_url, block_ms=50)
    topic = app.topic("rt-trace-take", value_type=Step)
    handled: list[str] = []

    @app.agent(topic, group="takers")
    async def collect(stream):
        async for values in stream.take(5, within=0.2):
            handled.extend(value.order_id for value in values)

    async with run_app(app):
        for n in range(7):
            await topic.send(value=Step(order_id=f"o-{n}"))
        await eventually(lambda: len(handled) == 7)
    finished = by_name(spans.get_finished_spans(), "collect rt.trace.step.v1")
    assert len(finished) == 7
    assert len({s.context.trace_id for s in finished if s.context}) == 7  # no traceparent sent


async def test_a_send_in_handling_is_the_child_of_its_own_events_span(
    spans: InMemorySpanExporter, redis_client, redis_url
) -> None:
    app = App("rt-trace-handling", broker=redis_url, block_ms=50)
    topic = app.topic("rt-trace-handling", value_type=Step)
    out = app.topic("rt-trace-handling-out", value_type=Step)
    failed_alone: list[str] = []
    pipe = redis_client.pipeline(transaction=False)
    for n in range(4):  # all there before the agent reads: one list of 4
        pipe.xadd(
            "rt-trace-handling", Envelope.new(Step(order_id=f"o-{n}"), source="t").to_fields()
        )
    await pipe.execute()

    async def echo(stream, event) -> None:
        with stream.handling(event):
            if event.value.order_id == "o-2":
                failed_alone.append(event.value.order_id)
                await stream.fail(event, RuntimeError("o-2 fails alone"))
                return
            await out.send(value=Step(order_id=event.value.order_id))

    @app.agent(topic, group="handlers", max_deliveries=1)
    async def fan(stream):
        async for events in stream.take_events(10):
            await asyncio.gather(*(echo(stream, event) for event in events))

    async with run_app(app):
        await eventually(lambda: _xlen_is(redis_client, "rt-trace-handling-out", 3))
    finished = by_name(spans.get_finished_spans(), "fan rt.trace.step.v1")
    assert len(finished) == 4
    span_of = {s.attributes["orderflow.event_id"]: s for s in finished if s.attributes}
    for _, fields in await redis_client.xrange("rt-trace-handling-out"):
        sent = Envelope.from_fields(fields)
        assert sent.traceparent is not None
        own = span_of[sent.causation_id]  # the span of the event it was sent for
        assert sent.traceparent.split("-")[2] == f"{span_id(own):016x}"
    errors = [s for s in finished if s.status.status_code == StatusCode.ERROR]
    assert failed_alone == ["o-2"] and len(errors) == 1


async def _xlen_is(redis_client, stream: str, count: int) -> bool:
    return await redis_client.xlen(stream) == count


def test_tracing_off_adds_no_field_and_no_span_keeper() -> None:
    assert tracing.active is None
    assert tracing.event_spans("group/agent") is None
    fields = Envelope.new(Step(order_id="o-1"), source="t").to_fields()
    assert "traceparent" not in fields and len(fields) == 8  # the 16 flat fields of old


def test_trace_fields_round_trip_and_keep_the_fast_layout() -> None:
    plain = Envelope.new(Step(order_id="o-1"), source="t")
    assert plain.traceparent is None
    old = Envelope.from_fields(plain.to_fields())  # an entry written before tracing existed
    assert old.traceparent is None and old.tracestate is None and old == plain

    traced = plain.model_copy(update={"traceparent": TRACEPARENT, "tracestate": "v=1"})
    fields = traced.to_fields()
    assert list(fields)[-2:] == ["traceparent", "tracestate"]
    assert Envelope.from_fields(fields) == traced
    flat = [part.encode() for item in fields.items() for part in item]
    assert is_envelope_layout(flat)
    decoded = EntryDecoder({"rt.trace.step.v1": Step}, 5).decode([(b"1-0", flat)])
    assert decoded.values == [Step(order_id="o-1")] and not decoded.invalid


def test_an_unknown_exporter_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        tracing.check_available(True)
    tracing.check_available(False)  # off: nothing is checked


def test_a_worker_asked_for_an_unknown_exporter_says_so_and_does_not_start() -> None:
    env = {
        **os.environ,
        "ORDERFLOW_TRACING": "true",
        "OTEL_TRACES_EXPORTER": "zipkin",
        "ORDERFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never reached
    }
    done = subprocess.run(
        [sys.executable, "-m", "orderflow.runtime", "worker", "tests.runtime.fault_app:app"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported" in done.stderr
    assert "Traceback" not in done.stderr


WITHOUT_OPENTELEMETRY = """
import sys
sys.modules["opentelemetry"] = None  # every `import opentelemetry...` fails: not installed
from orderflow.runtime import Envelope, Record, tracing
import orderflow.agents.orders, orderflow.web.app  # the services import fine without it

class Note(Record, event_type="rt.trace.absent.v1"):
    n: int

assert tracing.configure("svc", enabled=False) is False
assert tracing.event_spans("group/agent") is None
assert "traceparent" not in Envelope.new(Note(n=1), source="t").to_fields()
try:
    tracing.configure("svc", enabled=True)
except tracing.TracingUnavailable as exc:
    print(exc)
"""


def test_without_the_extra_tracing_off_works_and_on_is_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ORDERFLOW_TRACING=true needs OpenTelemetry: install the tracing extra" in done.stdout


def test_tracing_off_loads_no_tracing_implementation() -> None:
    """(redis-py itself imports parts of OpenTelemetry when it is installed; orderflow's
    implementation, and with it the SDK's tracer, stays unloaded.)"""
    script = (
        "import sys, orderflow.runtime, orderflow.agents.orders, orderflow.web.app\n"
        "print(sorted(m for m in sys.modules if m == 'orderflow.runtime.tracing_otel'"
        " or m.startswith('opentelemetry.sdk.trace')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
