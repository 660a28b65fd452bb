"""Optional OpenTelemetry tracing: the switch, and a no-op when it is off.

Why a facade: OpenTelemetry is an extra (``pip install 'orderflow[tracing]'``), and the
consumer's hot path is tuned to the raw redis-py limit. So nothing here imports
OpenTelemetry until :func:`configure` turns tracing on (``ORDERFLOW_TRACING=true``),
and every caller on a hot path asks one question that costs a constant: is
``event_spans(...)`` ``None`` / is :data:`active` ``None``. With tracing off a stream
does no per-event work beyond that check, and a send adds no envelope field.

With tracing on, :mod:`orderflow.runtime.tracing_otel` does the work: a span per event
handled (child of the ``traceparent`` its envelope carries), and every envelope built
while a span is current carries that span as its ``traceparent`` (W3C Trace Context),
so one order is one trace across processes. Configuration is the standard ``OTEL_*``
variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``) and
``OTEL_SERVICE_NAME`` are read there, the rest (endpoint, headers, sampler, batching,
resource attributes) by the OpenTelemetry SDK itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderflow.runtime.tracing_otel import EventSpans, OtelTracing

MISSING_EXTRA = (
    "ORDERFLOW_TRACING=true needs OpenTelemetry: install the tracing extra "
    "(pip install 'orderflow[tracing]')"
)

active: OtelTracing | None = None
"""The running implementation; ``None`` while tracing is off (the default)."""


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def configure(service_name: str, *, enabled: bool) -> bool:
    """Turn tracing on for this process (once; later calls keep the first setup).

    ``service_name`` is the default ``service.name``; ``OTEL_SERVICE_NAME`` wins over
    it. Returns whether tracing is on. Raises :class:`TracingUnavailable` when
    ``enabled`` but the extra is missing: a switch that silently does nothing would
    leave an operator looking for traces that never come."""
    global active
    if not enabled:
        return active is not None
    if active is not None:
        return True
    try:
        from orderflow.runtime.tracing_otel import OtelTracing
    except ImportError as exc:
        raise TracingUnavailable(f"{MISSING_EXTRA}: {exc}") from None
    active = OtelTracing.from_environment(service_name)
    return True


def check_available(enabled: bool) -> None:
    """Fail early (a parent process, before it starts its workers) when tracing is asked
    for and cannot run: the extra is missing or ``OTEL_TRACES_EXPORTER`` is unknown."""
    if not enabled:
        return
    try:
        from orderflow.runtime.tracing_otel import exporter_names
    except ImportError as exc:
        raise TracingUnavailable(f"{MISSING_EXTRA}: {exc}") from None
    exporter_names()


def install(implementation: OtelTracing | None) -> None:
    """Use ``implementation`` (tests: one with an in-memory exporter), or turn off."""
    global active
    active = implementation


def event_spans(handler: str) -> EventSpans | None:
    """The per-stream span keeper of an agent body, or ``None`` when tracing is off."""
    implementation = active
    return None if implementation is None else implementation.event_spans(handler)


def child_trace_headers() -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` naming the current span as parent, for an envelope
    built now; ``(None, None)`` when tracing is off or no span is current."""
    implementation = active
    if implementation is None:
        return None, None
    return implementation.child_headers()


def flush() -> None:
    """Export the spans still buffered (before a process ends); no-op when off."""
    implementation = active
    if implementation is not None:
        implementation.flush()
