"""The runtime's settings: every option an :class:`~orderflow.runtime.App` reads by default.

Why a settings object of its own: the runtime is a library that must not import the
application built on it (it could ship as a distribution of its own). Each field is an
``ORDERFLOW_<NAME>`` environment variable; an application that has more options
subclasses :class:`RuntimeSettings` (orderflow's own ``orderflow.agents.settings.Settings``
does), so one environment configures both and an ``App`` accepts either.

Every value here is a *default*: ``App(..., read_count=500)`` overrides it for one app.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    """Options of the agent runtime (units in the names: ``_ms``, ``_seconds``)."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    redis_url: str = Field(
        default="",
        description="Redis URL every App uses unless given App(broker=...): redis://host:port/db,"
        " or redis+cluster://host:port,host:port for a Redis Cluster. Empty: none.",
    )
    read_count: int = Field(
        default=100, ge=1, description="XREADGROUP COUNT: entries read per round trip."
    )
    read_block_ms: int = Field(
        default=1000,
        ge=1,
        description="XREADGROUP BLOCK: how long one read waits for new entries (ms).",
    )
    claim_idle_ms: int = Field(
        default=30_000,
        ge=1,
        description="Pending entries idle this long are taken over (XAUTOCLAIM) from a "
        "consumer presumed dead (ms). Keep it above the slowest handler's run time.",
    )
    claim_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often each consumer looks for such entries."
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="Deliveries (Redis's own count) before an event goes to dead-letters.",
    )
    retry_base_seconds: float = Field(
        default=0.5, ge=0, description="First retry back-off; doubles per delivery."
    )
    retry_cap_seconds: float = Field(default=30.0, ge=0, description="Longest retry back-off.")
    dedupe_ttl_seconds: int = Field(
        default=86_400,
        ge=1,
        description="A processed event id is remembered at least this long, at most twice.",
    )
    shutdown_timeout_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On stop: how long agents may finish in-flight events before cancel.",
    )
    stream_maxlen: int = Field(
        default=100_000,
        ge=0,
        description="Approximate MAXLEN of every topic without a maxlen of its own (0: none).",
    )
    scheduler_interval_seconds: float = Field(
        default=0.1, gt=0, description="How often delayed events are checked for being due."
    )
    metrics_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often consumer lag and pending counts are polled."
    )
    admin_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "> 0: `orderflow worker` serves /metrics, /livez and /readyz on this port "
            "(an admin port, never the public one); 0: none."
        ),
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="`json` (one object a line) or `console` (for people)."
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    gc_freeze_at_start: bool = Field(
        default=True,
        description="true: once every App of `orderflow worker` has started, what start-up "
        "left alive (modules, classes, settings, clients) is moved out of CPython's full "
        "garbage collections (gc.freeze), which then walk only what was made since; "
        "false: the collector walks everything, as Python does by default.",
    )
    tracing: bool = Field(
        default=False,
        description="true: OpenTelemetry tracing (needs the `tracing` extra): a span per "
        "event handled and per HTTP request, `traceparent` in every envelope sent; the "
        "exporter, sampler and service name come from the standard OTEL_* variables. "
        "false: none of it, at no cost.",
    )


@lru_cache(maxsize=1)
def get_runtime_settings() -> RuntimeSettings:
    """Read once per process; tests and embedders pass ``RuntimeSettings(...)`` instead."""
    return RuntimeSettings()
