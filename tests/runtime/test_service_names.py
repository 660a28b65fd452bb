"""Several services' Apps in one worker process: each log line and each span names the
service that wrote it, not the process (``orders+delivery``).

The Apps run in one event loop against a real private server, as ``orderflow worker
orders delivery`` (the demo's ``paired`` layout) runs them; spans go to OpenTelemetry's
in-memory exporter (the SDK itself). The demo's processes are checked end to end in
tests/system/test_log_correlation.py and tests/system/test_tracing_processes.py.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderflow.runtime import App, Record, tracing
from orderflow.runtime.context import current_service
from orderflow.runtime.logs import ContextFilter, JsonFormatter
from orderflow.runtime.testing import eventually, run_app
from orderflow.runtime.tracing_otel import OtelTracing

PROCESS = "rt-kitchen+rt-courier"


class Ticket(Record, event_type="rt.names.ticket.v1"):
    order_id: str


def two_apps(redis_url: str, log: logging.Logger, seen: list[str]) -> tuple[App, App]:
    """``rt-kitchen`` cooks what is ordered and hands it to ``rt-courier``: two services,
    each logging from its agent, as orders and delivery do in one ``paired`` worker."""
    kitchen = App("rt-kitchen", broker=redis_url, block_ms=50)
    courier = App("rt-courier", broker=redis_url, block_ms=50)
    ordered = kitchen.topic("rt-names-ordered", value_type=Ticket)
    cooked = kitchen.topic("rt-names-cooked", value_type=Ticket)
    courier.topic("rt-names-cooked", value_type=Ticket)

    @kitchen.agent(ordered, group="kitchen")
    async def cook(stream):
        async for event in stream.events():
            log.info("cooking %s", event.value.order_id)
            await cooked.send(value=Ticket(order_id=event.value.order_id))

    @courier.agent(courier.topics["rt-names-cooked"], group="courier")
    async def carry(stream):
        async for event in stream.events():
            log.info("carrying %s", event.value.order_id)
            seen.append(event.value.order_id)

    return kitchen, courier


async def test_each_log_line_names_the_app_whose_task_wrote_it(redis_url) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(PROCESS))  # the worker's name, as configure_logging sets it
    log = logging.getLogger("rt.names.test")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    seen: list[str] = []
    kitchen, courier = two_apps(redis_url, log, seen)
    try:
        async with run_app(kitchen), run_app(courier):
            await kitchen.topics["rt-names-ordered"].send(value=Ticket(order_id="o-1"))
            await eventually(lambda: seen == ["o-1"])
        log.info("worker stopped")  # outside every App: the process's name
    finally:
        log.removeHandler(handler)
    lines = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert [(line["service"], line["message"]) for line in lines] == [
        ("rt-kitchen", "cooking o-1"),
        ("rt-courier", "carrying o-1"),
        (PROCESS, "worker stopped"),
    ]
    assert current_service.get() is None  # starting an App leaves the caller's context as it was


@pytest.fixture
def exporters() -> Iterator[dict[str, InMemorySpanExporter]]:
    """Tracing on with a provider per service, as ``OtelTracing.from_environment`` sets it
    up without ``OTEL_SERVICE_NAME``; each provider's spans kept in memory."""
    exporters: dict[str, InMemorySpanExporter] = {}
    providers: list[TracerProvider] = []

    def provider_for(service: str) -> TracerProvider:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        exporters[service] = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporters[service]))
        providers.append(provider)
        return provider

    tracing.install(
        OtelTracing(provider_for(PROCESS), service_name=PROCESS, provider_for=provider_for)
    )
    try:
        yield exporters
    finally:
        tracing.install(None)
        for provider in providers:
            provider.shutdown()


async def test_each_span_names_the_service_that_handled_the_event(
    exporters: dict[str, InMemorySpanExporter], redis_url
) -> None:
    seen: list[str] = []
    kitchen, courier = two_apps(redis_url, logging.getLogger("rt.names.quiet"), seen)
    async with run_app(kitchen), run_app(courier):
        await kitchen.topics["rt-names-ordered"].send(value=Ticket(order_id="o-2"))
        await eventually(lambda: seen == ["o-2"])
    await eventually(lambda: exporters["rt-courier"].get_finished_spans())
    named = {
        service: sorted(span.name for span in exporter.get_finished_spans())
        for service, exporter in exporters.items()
    }
    assert named == {
        PROCESS: [],
        "rt-kitchen": ["cook rt.names.ticket.v1"],
        "rt-courier": ["carry rt.names.ticket.v1"],
    }
    [cook] = exporters["rt-kitchen"].get_finished_spans()
    [carry] = exporters["rt-courier"].get_finished_spans()
    assert cook.resource.attributes[SERVICE_NAME] == "rt-kitchen"
    assert carry.resource.attributes[SERVICE_NAME] == "rt-courier"
    assert carry.context is not None and cook.context is not None
    assert carry.context.trace_id == cook.context.trace_id  # still one trace across services
    assert carry.parent is not None and carry.parent.span_id == cook.context.span_id


def test_from_the_environment_a_service_gets_its_own_name_unless_the_operator_set_one(
    monkeypatch,
) -> None:
    """Without ``OTEL_SERVICE_NAME`` each App's spans name its service; with it, the
    operator named the process's spans, and that name is kept for every App."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    per_service = OtelTracing.from_environment(PROCESS)
    kitchen = per_service.tracer_for("rt-kitchen")
    assert kitchen is per_service.tracer_for("rt-kitchen")  # one provider per service
    assert kitchen.resource.attributes[SERVICE_NAME] == "rt-kitchen"  # type: ignore[attr-defined]
    assert per_service.tracer_for(None) is per_service.tracer_for(PROCESS) is per_service.tracer
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kitchen-pod")
    fixed = OtelTracing.from_environment(PROCESS)
    assert fixed.tracer_for("rt-kitchen") is fixed.tracer
    assert fixed.provider.resource.attributes[SERVICE_NAME] == "kitchen-pod"
