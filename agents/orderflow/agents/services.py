"""The registry of orderflow's service apps, for ``orderflow demo`` and the tests.

Each service module exposes a module-level ``app`` (what ``orderflow worker
orderflow.agents.orders:app`` runs in production, one process per service) and a factory
that builds a fresh app with an explicit broker and store (what the in-process
system tests and tools use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orderflow.agents.delivery import create_delivery_app
from orderflow.agents.notifications import create_notifications_app
from orderflow.agents.orders import create_orders_app
from orderflow.agents.simulator import create_simulator_app
from orderflow.models.store import Store
from orderflow.runtime import App


@dataclass(frozen=True)
class Service:
    """One deployable service: its name and the ``module:attribute`` of its app."""

    name: str
    target: str


SERVICES: tuple[Service, ...] = (
    Service("orders", "orderflow.agents.orders:app"),
    Service("delivery", "orderflow.agents.delivery:app"),
    Service("notifications", "orderflow.agents.notifications:app"),
    Service("simulator", "orderflow.agents.simulator:app"),
)


def create_service_apps(
    *,
    broker: str | None = None,
    store: Store | None = None,
    simulator_delay: tuple[float, float] | None = None,
    relay_interval: float | None = None,
    relay_min_age: float | None = None,
    names: Sequence[str] | None = None,
) -> list[App]:
    """Fresh apps for the named services (all by default), sharing ``broker`` and ``store``."""
    wanted = set(names) if names is not None else {service.name for service in SERVICES}
    apps: list[App] = []
    if "orders" in wanted:
        apps.append(
            create_orders_app(
                broker=broker,
                store=store,
                relay_interval=relay_interval,
                relay_min_age=relay_min_age,
            )
        )
    if "delivery" in wanted:
        apps.append(create_delivery_app(broker=broker, store=store))
    if "notifications" in wanted:
        apps.append(create_notifications_app(broker=broker))
    if "simulator" in wanted:
        low, high = simulator_delay if simulator_delay is not None else (None, None)
        apps.append(create_simulator_app(broker=broker, delay_min=low, delay_max=high))
    return apps
