"""Tracing with OpenTelemetry: imported only once tracing is on (see :mod:`.tracing`).

Spans:

* one per event handled, ``<agent> <event type>`` (kind CONSUMER; the agent's name
  without its module, the full name is the ``orderflow.agent`` attribute), child of the span
  named by the envelope's ``traceparent`` (a new trace when there is none); it starts
  when the agent body receives the event and ends when the body asks for the next one
  (or returns), with status ERROR and the exception recorded when the body raised;
* one per HTTP request (``orderflow.web.request_spans``), kind SERVER, continuing an
  incoming ``traceparent`` header.

While a span is current, envelopes built in the same task (or in a thread that copied
its context, as the store's threads do) carry it as their ``traceparent``: a send made
while handling an event is a child of the handler's span, and an outbox row stores the
envelope with it, so an event relayed later still joins the trace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from orderflow.runtime.context import current_service
from orderflow.runtime.wire import text

if TYPE_CHECKING:
    from orderflow.runtime.batch import Batch

_PROPAGATOR = TraceContextTextMapPropagator()
_EMPTY = otel_context.Context()
SCOPE = "orderflow.runtime"


EXPORTERS = ("otlp", "console", "none")


def exporter_names() -> list[str]:
    """``OTEL_TRACES_EXPORTER`` (comma-separated; default ``otlp``), checked: raises
    ``ValueError`` naming what is supported for anything else."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in names:
        if name and name not in EXPORTERS:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported: use {', '.join(EXPORTERS)}"
            )
    return [name for name in names if name]


def exporters_from_environment() -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp``, the default, is OTLP over
    HTTP/protobuf configured by ``OTEL_EXPORTER_OTLP_*``; ``console``; ``none``)."""
    exporters: list[SpanExporter] = []
    for name in exporter_names():
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
    return exporters


def provider_from_environment(service_name: str) -> TracerProvider:
    """A provider whose ``service.name`` is ``service_name``, exporting as the ``OTEL_*``
    variables say (the SDK reads the sampler's, the batch processor's and the exporter's
    own; ``OTEL_RESOURCE_ATTRIBUTES`` joins the resource)."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    for exporter in exporters_from_environment():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class OtelTracing:
    """A tracer over a :class:`TracerProvider`, and the propagation rules above.

    ``service.name`` is a property of a provider's resource, not of a span, so a worker
    that runs several services' Apps in one process (the demo's ``paired`` layout) needs
    a provider per service for its spans to name the service that handled each event:
    ``provider_for`` makes one for a service name the first time an agent of that App
    asks (:data:`~orderflow.runtime.context.current_service`). Without it (an operator's
    ``OTEL_SERVICE_NAME``, tests) every span is the main provider's."""

    def __init__(
        self,
        provider: TracerProvider,
        *,
        service_name: str | None = None,
        provider_for: Callable[[str], TracerProvider] | None = None,
    ) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE)
        self._provider_for = provider_for
        self._tracers: dict[str, trace.Tracer] = {}
        self._providers = [provider]
        if service_name is not None:
            self._tracers[service_name] = self.tracer

    @classmethod
    def from_environment(cls, service_name: str) -> OtelTracing:
        """A provider from the ``OTEL_*`` variables, registered as the global one so that
        application code's ``trace.get_tracer(...)`` spans join the same traces; each
        service of the process gets its own provider unless ``OTEL_SERVICE_NAME`` names
        one service for all."""
        fixed = os.environ.get("OTEL_SERVICE_NAME")
        provider = provider_from_environment(fixed or service_name)
        trace.set_tracer_provider(provider)
        if fixed:
            return cls(provider)
        return cls(provider, service_name=service_name, provider_for=provider_from_environment)

    def tracer_for(self, service: str | None) -> trace.Tracer:
        """The tracer whose spans name ``service`` (the main one for ``None``, or when
        this process does not name services apart)."""
        if service is None or self._provider_for is None:
            return self.tracer
        tracer = self._tracers.get(service)
        if tracer is None:
            provider = self._provider_for(service)
            self._providers.append(provider)
            tracer = self._tracers[service] = provider.get_tracer(SCOPE)
        return tracer

    def flush(self) -> None:
        for provider in self._providers:
            provider.force_flush()

    # ----------------------------------------------------------- propagation
    def child_headers(self) -> tuple[str | None, str | None]:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent"), carrier.get("tracestate")

    @staticmethod
    def parent_context(traceparent: str | None, tracestate: str | None) -> otel_context.Context:
        """The context a ``traceparent`` names (the empty one: a new trace)."""
        if not traceparent:
            return _EMPTY
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        return _PROPAGATOR.extract(carrier, context=_EMPTY)

    # ------------------------------------------------------------ HTTP spans
    def start_server_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> tuple[Span, otel_context.Context]:
        """A SERVER span continuing the request's ``traceparent``, made current for the
        rest of the task; returns it with the context to restore when it ends."""
        parent = self.parent_context(headers.get("traceparent"), headers.get("tracestate"))
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes)
        )
        before = otel_context.get_current()
        otel_context.attach(trace.set_span_in_context(span, parent))
        return span, before

    @staticmethod
    def end_server_span(span: Span, before: otel_context.Context, status: int) -> None:
        """End the span with the answer's status (ERROR for a 5xx) and restore the task's
        context as it was (a keep-alive connection's next request runs in the same task).
        Restored by attaching, not by detaching a token: that would log an error if a
        response were ever sent from another context."""
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        otel_context.attach(before)

    # ----------------------------------------------------------- event spans
    def event_spans(self, handler: str) -> EventSpans:
        tracer = self.tracer_for(current_service.get())
        return EventSpans(tracer, handler.rpartition("/")[2])


class EventSpans:
    """The open span(s) of one agent body: the event it holds, or a ``take`` list."""

    __slots__ = ("_agent", "_before", "_open", "_short", "_tracer")

    def __init__(self, tracer: trace.Tracer, agent: str) -> None:
        self._tracer = tracer
        self._agent = agent  # the agent's full name (module.function by default)
        self._short = agent.rpartition(".")[2]  # what a span name needs: the function
        self._open: list[Span] = []
        self._before = _EMPTY  # the task's context outside the spans, restored by end()

    def begin(self, batch: Batch, index: int) -> None:
        """The body received event ``index`` of ``batch``: its span starts and becomes
        the current one of the body's task (sends made now are its children)."""
        self.end()
        span = self._start(batch, index)
        self._open.append(span)
        self._before = otel_context.get_current()
        otel_context.attach(trace.set_span_in_context(span))

    def begin_many(self, items: Sequence[tuple[Batch, int]]) -> None:
        """A ``take`` list: a span per event; the last one is current (as for the scope)."""
        self.end()
        self._open = [self._start(batch, index) for batch, index in items]
        if self._open:
            self._before = otel_context.get_current()
            otel_context.attach(trace.set_span_in_context(self._open[-1]))

    def enter(self, position: int) -> object:
        """A handler starts on event ``position`` of the list (``stream.handling``): its
        span becomes the current one of the calling task; returns what :meth:`leave`
        takes. Each concurrent handler runs in its own task, so each sees its own span."""
        return otel_context.attach(trace.set_span_in_context(self._open[position]))

    def leave(self, token: object) -> None:
        """The handler of :meth:`enter` is done: the task's span is what it was before."""
        otel_context.detach(cast(Token[otel_context.Context], token))

    def fail_one(self, position: int, exc: BaseException) -> None:
        """Event ``position`` of the list failed alone (``stream.fail``)."""
        span = self._open[position]
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def end(self) -> None:
        """The body is done with what it held."""
        if self._open:
            for span in self._open:
                span.end()
            self._open = []
            otel_context.attach(self._before)

    def fail(self, exc: BaseException) -> None:
        """The body raised while holding these events."""
        for span in self._open:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.end()

    def _start(self, batch: Batch, index: int) -> Span:
        event = batch.event(index)
        fields = event.fields_dict()
        traceparent = fields.get(b"traceparent")
        tracestate = fields.get(b"tracestate")
        parent = OtelTracing.parent_context(
            text(traceparent) if traceparent else None, text(tracestate) if tracestate else None
        )
        event_type = event.event_type
        return self._tracer.start_span(
            f"{self._short} {event_type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": event.stream,
                "messaging.consumer.group.name": event.group,
                "messaging.message.id": event.event_id,
                "orderflow.agent": self._agent,
                "orderflow.stream": event.stream,
                "orderflow.group": event.group,
                "orderflow.entry_id": event.message_id,
                "orderflow.event_id": event.event_id,
                "orderflow.event_type": event_type,
                "orderflow.delivery_count": event.delivery_count,
                "orderflow.correlation_id": event.correlation_id or "",
            },
        )
