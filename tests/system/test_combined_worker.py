"""Several services' agents in one worker process (issue 13, point 1: the combined layout).

Real servers throughout: the session's Valkey, a SQLite file per test, and
``orderflow worker`` run as a subprocess with all four service apps, exactly as
``orderflow demo --layout combined`` runs it.

* The combined worker takes an order placed the way the API places it to
  ``delivered``, with each status announced once; its one admin port's ``/readyz``
  lists every agent of every service (``<service>/agent:<name>``).
* A combined worker and a per-service orders worker side by side (a migration
  between layouts): both are consumers of the same ``orders-group``, and every order
  is still delivered with each status exactly once.
* The paired layout (the store's writers in one process, the rest in another)
  delivers every order with each status once.
* In-process: the readiness of several Apps fails naming the service whose agent
  stopped; Apps of one process share one open store, closed by the last to stop.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from orderflow.agents.placement import place_order
from orderflow.agents.processes import ProcessSpec, ProcessTree, cli_argv
from orderflow.agents.readiness import HttpOk
from orderflow.agents.services import SERVICES, create_service_apps, worker_processes
from orderflow.agents.store_provider import SharedStore, attach_store
from orderflow.agents.topics import ORDER_STATUS_STREAM, ORDERS_STREAM, topic_streams
from orderflow.models.documents import OrderLineRequest
from orderflow.models.store import Store
from orderflow.runtime import App
from orderflow.runtime.localserver import free_port
from orderflow.runtime.testing import eventually
from orderflow.runtime.worker import apps_readiness
from tests.system.conftest import envelopes_for_order, running

ROOT = Path(__file__).resolve().parents[2]
ORDER_LIFECYCLE = ["created", "confirmed", "preparing", "out_for_delivery", "delivered"]
READY_TIMEOUT = 60.0  # a guard against a hang on a loaded machine, not a speed assertion
DELIVERED_TIMEOUT = 45.0
TARGETS = [service.target for service in SERVICES]


def worker_spec(
    name: str, targets: list[str], redis_url: str, store_url: str, log_dir: Path
) -> tuple[ProcessSpec, int]:
    """``orderflow worker TARGETS...`` with zero simulator delays and an admin port,
    ready when its ``/readyz`` answers 200."""
    admin_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env.update(
        ORDERFLOW_REDIS_URL=redis_url,
        ORDERFLOW_STORE_URL=store_url,
        ORDERFLOW_SIMULATOR_DELAY_MIN="0",
        ORDERFLOW_SIMULATOR_DELAY_MAX="0",
        ORDERFLOW_OUTBOX_RELAY_INTERVAL_SECONDS="0.2",
        ORDERFLOW_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    ready = HttpOk(f"http://127.0.0.1:{admin_port}/readyz", timeout=2.0)
    admin = ("--admin-port", str(admin_port), "--admin-host", "127.0.0.1")
    log_path = log_dir / f"{name}.log"
    argv = cli_argv("worker", *targets, *admin)
    return ProcessSpec(name, argv, env, cwd=ROOT, log_path=log_path, ready=ready), admin_port


def readyz(admin_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=10) as answer:
        assert answer.status == 200
        body: dict[str, Any] = json.loads(answer.read())
        return body


@dataclass
class Workers:
    """What a test of real worker processes needs: their tree (stopped at teardown),
    the servers, and a publisher to place orders the way the API does."""

    tree: ProcessTree
    redis_url: str
    redis_client: aioredis.Redis
    store_url: str
    store: Store
    publisher: App
    log_dir: Path

    def launch(self, name: str, targets: list[str]) -> int:
        """Start ``orderflow worker TARGETS...``; its admin port."""
        spec, admin_port = worker_spec(name, targets, self.redis_url, self.store_url, self.log_dir)
        self.tree.launch(spec)
        return admin_port


@pytest.fixture
def workers(
    redis_url: str,
    redis_client: aioredis.Redis,
    store_url: str,
    store: Store,
    publisher: App,
    tmp_path: Path,
) -> Iterator[Workers]:
    with ProcessTree(grace=20.0) as tree:
        yield Workers(tree, redis_url, redis_client, store_url, store, publisher, tmp_path)


async def place_and_deliver(store: Store, publisher: App, count: int) -> list[str]:
    """Place ``count`` orders as the API does; wait until every one is delivered."""
    ids = []
    for _ in range(count):
        lines = [OrderLineRequest(item_id="margherita", quantity=1)]
        ids.append((await place_order(store, publisher, lines)).order.id)

    async def all_delivered() -> bool:
        for order_id in ids:
            order = await store.get_order(order_id)
            if order is None or order.status != "delivered":
                return False
        return True

    await eventually(all_delivered, timeout=DELIVERED_TIMEOUT, message="orders delivered")
    return ids


async def assert_each_status_once(
    store: Store, redis_client: aioredis.Redis, order_ids: list[str]
) -> None:
    for order_id in order_ids:
        order = await store.get_order(order_id)
        assert order is not None
        assert [change.status for change in order.history] == ORDER_LIFECYCLE
        updates = await envelopes_for_order(
            redis_client, ORDERS_STREAM, order_id, "order.status_updated.v1"
        )
        assert [u.payload["status"] for u in updates] == ORDER_LIFECYCLE[1:]


@pytest.mark.timeout(120)
async def test_the_combined_worker_delivers_and_its_readyz_covers_every_agent(
    workers: Workers,
) -> None:
    admin_port = workers.launch("workers", TARGETS)
    tree, store, redis_client = workers.tree, workers.store, workers.redis_client
    tree.wait_ready(READY_TIMEOUT)

    checks = readyz(admin_port)["checks"]
    expected = {"app", "redis"}
    apps = create_service_apps(broker=workers.redis_url, store=store)
    for app in apps:
        names = {f"{app.name}/{name}" for name in expected}
        names |= {f"{app.name}/agent:{agent.name}" for agent in app.agents}
        assert names <= set(checks), (app.name, sorted(checks))
        assert all(checks[name] == "ok" for name in names)
    assert len([name for name in checks if "/agent:" in name]) == sum(
        len(app.agents) for app in apps
    )

    order_ids = await place_and_deliver(store, workers.publisher, 3)
    await assert_each_status_once(store, redis_client, order_ids)
    output = tree["workers"].output()
    for service in SERVICES:  # one banner per service, in the one process
        assert f"worker {service.name} running:" in output, output[-3000:]
    assert tree.stop() == {"workers": 0}


@pytest.mark.timeout(150)
async def test_combined_and_split_workers_side_by_side_share_the_groups(
    workers: Workers,
) -> None:
    """A migration between layouts: the combined worker and a per-service orders worker
    read the same streams as two consumers of each group, as two replicas would."""
    workers.launch("workers", TARGETS)
    workers.launch("orders", [TARGETS[0]])
    tree, store, redis_client = workers.tree, workers.store, workers.redis_client
    tree.wait_ready(READY_TIMEOUT)

    order_ids = await place_and_deliver(store, workers.publisher, 10)
    await assert_each_status_once(store, redis_client, order_ids)
    consumers: set[str] = set()
    for stream in topic_streams(ORDER_STATUS_STREAM):
        if await redis_client.exists(stream):
            for consumer in await redis_client.xinfo_consumers(stream, "orders-group"):
                consumers.add(str(consumer["name"]))
    assert len(consumers) == 2, consumers  # one per process, same group
    assert tree.stop() == {"workers": 0, "orders": 0}


def test_replicas_of_a_layout_are_named_apart_and_run_the_same_targets() -> None:
    assert worker_processes("combined", replicas=2) == [
        ("workers-1", TARGETS),
        ("workers-2", TARGETS),
    ]
    split = worker_processes("split", TARGETS[:2], replicas=2)
    assert [name for name, _ in split] == ["orders-1", "orders-2", "delivery-1", "delivery-2"]
    assert worker_processes("split", TARGETS[:1]) == [("orders", TARGETS[:1])]
    with pytest.raises(ValueError):
        worker_processes("combined", replicas=0)
    assert worker_processes("paired") == [("writers", TARGETS[:2]), ("reactors", TARGETS[2:])]
    assert worker_processes("paired", TARGETS[2:]) == [("reactors", TARGETS[2:])]


@pytest.mark.timeout(150)
async def test_the_paired_layout_writes_from_one_process_and_delivers_each_status_once(
    workers: Workers,
) -> None:
    """``paired``: orders and delivery in ``writers`` (one open store, so one SQLite
    writer thread and one flock for both), simulator and notifications in
    ``reactors``; every order is delivered with each status once."""
    for name, targets in worker_processes("paired"):
        workers.launch(name, targets)
    tree, store, redis_client = workers.tree, workers.store, workers.redis_client
    tree.wait_ready(READY_TIMEOUT)

    order_ids = await place_and_deliver(store, workers.publisher, 10)
    await assert_each_status_once(store, redis_client, order_ids)
    writers, reactors = tree["writers"].output(), tree["reactors"].output()
    for service in ("orders", "delivery"):
        assert f"worker {service} running:" in writers, writers[-3000:]
    for service in ("notifications", "simulator"):
        assert f"worker {service} running:" in reactors, reactors[-3000:]
    assert tree.stop() == {"writers": 0, "reactors": 0}


@pytest.mark.timeout(150)
async def test_two_combined_replicas_share_every_group_and_deliver_each_status_once(
    workers: Workers,
) -> None:
    """``worker_processes("combined", replicas=2)`` (``load.py --worker-replicas 2``): two
    processes that each run every service, two consumers of every group."""
    for name, targets in worker_processes("combined", replicas=2):
        workers.launch(name, targets)
    tree, store, redis_client = workers.tree, workers.store, workers.redis_client
    tree.wait_ready(READY_TIMEOUT)

    order_ids = await place_and_deliver(store, workers.publisher, 10)
    await assert_each_status_once(store, redis_client, order_ids)
    for group in ("orders-group", "simulator-group"):
        consumers: set[str] = set()
        for stream in topic_streams(
            ORDER_STATUS_STREAM if group == "orders-group" else ORDERS_STREAM
        ):
            if await redis_client.exists(stream):
                for consumer in await redis_client.xinfo_consumers(stream, group):
                    consumers.add(str(consumer["name"]))
        assert len(consumers) == 2, (group, consumers)
    assert tree.stop() == {"workers-1": 0, "workers-2": 0}


async def test_readiness_of_several_apps_names_the_service_whose_agent_stopped(
    redis_url: str, redis_client: aioredis.Redis, store: Store
) -> None:
    apps = create_service_apps(broker=redis_url, store=store, simulator_delay=(0.0, 0.0))
    async with running(apps):
        checks = await apps_readiness(apps)
        assert all(check.ok for check in checks), [c for c in checks if not c.ok]
        assert {c.name.split("/")[0] for c in checks} == {s.name for s in SERVICES}
        delivery = next(app for app in apps if app.name == "delivery")
        agent = delivery.agents[0]
        for task in agent.tasks:
            task.cancel()
        await eventually(lambda: all(task.done() for task in agent.tasks), timeout=10)
        failing = [c.name for c in await apps_readiness(apps) if not c.ok]
        assert failing == [f"delivery/agent:{agent.name}"]


async def test_apps_of_one_process_share_one_store_closed_by_the_last(
    redis_url: str, store_url: str, store: Store
) -> None:
    first, second = App("first", broker=redis_url), App("second", broker=redis_url)
    first_source = attach_store(first, url=store_url)
    second_source = attach_store(second, url=store_url)
    assert isinstance(first_source, SharedStore) and isinstance(second_source, SharedStore)
    await first.start()
    await second.start()
    try:
        shared = await first_source.get()
        assert await second_source.get() is shared
        assert shared is not store  # the test's own store is another connection
        await first.stop()
        assert await shared.count_orders() >= 0  # still open for the second App
    finally:
        await second.stop()
        await first.stop()
    assert SharedStore._providers == {}  # the last App closed it and let it go
