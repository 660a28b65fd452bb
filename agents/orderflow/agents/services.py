"""The registry of orderflow's service apps, for ``orderflow demo`` and the tests.

Each service module exposes a module-level ``app`` (what ``orderflow worker
orderflow.agents.orders:app`` runs in production, one process per service) and a factory
that builds a fresh app with an explicit broker and store (what the in-process
system tests and tools use).

The services run as worker processes in one of three layouts (:func:`worker_processes`):
``split``, one ``orderflow worker`` process per service (the Helm chart's, each scaled on
its own); ``combined``, every service's App in one ``orderflow worker`` process (one
event loop, one shared store, each service's consumer groups unchanged); or ``paired``
(the demo's default), the two services that write the store in one process and the two
that only talk to Redis in another. On a small machine fewer processes save wake-ups and
the hops between them, and one store writer per process instead of two saves handing
SQLite's write lock between them; docs/system.md, "Process layouts", has the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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

Layout = Literal["split", "combined", "paired"]
LAYOUTS: tuple[Layout, ...] = ("split", "combined", "paired")
COMBINED_WORKER = "workers"
"""The name of the one worker process of the ``combined`` layout."""
STORE_WRITERS: frozenset[str] = frozenset({"orders", "delivery"})
"""The services that write the store: the ``paired`` layout's ``writers`` process."""
PAIRED_WORKERS: tuple[str, str] = ("writers", "reactors")
"""The ``paired`` layout's processes: the store's writers, and the services that only
react on Redis (the simulator and the notifications' status cache)."""


def service_of(target: str) -> str:
    """``orderflow.agents.orders:app`` -> ``orders``: the service a worker target runs."""
    return target.split(":")[0].rsplit(".", 1)[-1]


def worker_processes(
    layout: Layout, targets: Sequence[str] | None = None, *, replicas: int = 1
) -> list[tuple[str, list[str]]]:
    """The worker processes of ``layout`` for ``targets`` (default: every service's app):
    each one's name and its ``orderflow worker`` arguments.

    * ``split``: one process per service, named after it.
    * ``combined``: one process, ``workers``, running every target.
    * ``paired``: ``writers`` runs the services that write the store (orders, delivery:
      one shared store, so one SQLite writer thread and one group commit for both
      instead of two processes taking the file's write lock in turn) and ``reactors``
      the others (simulator, notifications); a process with no target is left out.

    ``replicas`` runs each of them that many times, named ``<name>-1`` ... ``<name>-N``:
    replicas are more consumers of the same groups (each event goes to one of them), so
    ``combined`` with two replicas is two processes that each run every service, which on
    two cores uses both, with the combined layout's lower CPU per event.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    targets = [s.target for s in SERVICES] if targets is None else list(targets)
    if layout == "combined":
        processes = [(COMBINED_WORKER, targets)] if targets else []
    elif layout == "paired":
        writers = [t for t in targets if service_of(t) in STORE_WRITERS]
        reactors = [t for t in targets if service_of(t) not in STORE_WRITERS]
        pairs = zip(PAIRED_WORKERS, (writers, reactors), strict=True)
        processes = [(name, argv) for name, argv in pairs if argv]
    elif layout == "split":
        processes = [(service_of(target), [target]) for target in targets]
    else:
        raise ValueError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
    if replicas == 1:
        return processes
    return [
        (f"{name}-{replica}", argv)
        for name, argv in processes
        for replica in range(1, replicas + 1)
    ]


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
