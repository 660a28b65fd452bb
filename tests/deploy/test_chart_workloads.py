"""The image and the chart's workloads, run: every Deployment, Job and CronJob container.

The chart is rendered for an external Redis and an external PostgreSQL
(``ci/external-postgres-values.yaml`` with the URLs pointed at stand-in host
names), and each rendered container is run **as a container of the image built
from the Dockerfile** (``containers.py``: a debootstrap'd Debian bookworm stand-in
for ``python:3.11-slim``, which cannot be pulled here) with the rendered command,
args, environment (ConfigMap and Secret references resolved), user, read-only
root filesystem, emptyDirs as tmpfs and dropped capabilities, on the host network
against the session's private Valkey and a fresh database on the private
PostgreSQL. It runs the seed Job, starts every Deployment, waits until each
declared port is listened on and each probe answers 200, places an order through
the API (reached as the Ingress routes ``/api/v1/orders``), follows it to ``delivered`` on
the gateway's WebSocket (as the Ingress routes ``/ws``), then runs the refill
CronJob and sees the stock restored; SIGTERM then stops every container with 0.

What makes it fail, by construction: an ``ORDERFLOW_*`` variable (chart or image)
that no field of the settings the process reads declares; a containerPort that
no variable or argument sets, or that nothing listens on; a probe that does not
answer 200; a path the code writes that the securityContext leaves read-only
(the process fails or its probe does). Where containers cannot run (no podman or
runc, not root, podman broken) the container test is skipped with that reason;
the same wiring is checked with plain processes by the last test, which always
runs (it cannot check the user, read-only root, capabilities or tmpfs).

The container run and the plain-process run are repeated with the chart rendered for an
external Redis Cluster (a ``redis+cluster://`` URL naming one startup node, 3 partitions)
against the session's private cluster (:class:`LocalCluster`).

Run alone: ``.venv/bin/pytest -q tests/deploy/test_chart_workloads.py`` (add
``-o log_cli=true --log-cli-level=INFO`` to watch the steps and their timings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as redis_sync

from orderflow.agents.processes import ChildExited
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer
from tests.deploy import containers
from tests.deploy.chart_stack import ChartStack, ContainerRunner, ProcessRunner, Runner, http_json
from tests.deploy.dockerfile import ImageConfig, runtime_stage_config
from tests.deploy.paths import chart_values
from tests.deploy.rendering import NAMESPACE, render, value_set
from tests.deploy.wiring import (
    AddressBook,
    Launch,
    plan,
    settings_read_by,
    unread_variables,
)
from tests.deploy.workloads import Workload, workloads
from tests.ports import port_below_ephemeral_range

log = logging.getLogger("tests.deploy.chart_workloads")

# The external servers as the release names them; mapped to the private ones.
STAND_IN_REDIS = ("valkey.external.test", 6379)
STAND_IN_POSTGRES = ("postgresql.external.test", 5432)
READY_TIMEOUT = 180.0  # every Deployment up on a 2-core machine: a guard, not a bound
DELIVERED_TIMEOUT = 90.0  # zero simulator delays; a guard against hanging
ORDERED = 2


def release_values(database_url: str, *, cluster: bool = False) -> dict[str, Any]:
    """The external-PostgreSQL value set, its URLs aimed at the stand-in host names; with
    ``cluster``, Redis is a cluster (one startup node) and the per-order topics have 3
    partitions, as `ci/external-cluster-values.yaml` would set them."""
    values = value_set("external-postgres")
    database = urlsplit(database_url)
    redis_host, redis_port = STAND_IN_REDIS
    pg_host, pg_port = STAND_IN_POSTGRES
    if cluster:
        values["redis"]["externalUrl"] = f"redis+cluster://{redis_host}:{redis_port}"
        values.setdefault("config", {})["topicPartitions"] = 3
    else:
        values["redis"]["externalUrl"] = f"redis://{redis_host}:{redis_port}/0"
    values["postgresql"]["externalUrl"] = (
        f"postgresql://{database.username}@{pg_host}:{pg_port}{database.path}"
    )
    # Zero simulator delays: the order walks its lifecycle at full speed.
    values.setdefault("config", {}).update(simulatorDelayMin=0, simulatorDelayMax=0)
    return values


def chart_workloads(values: dict[str, Any]) -> tuple[list[Any], list[Workload]]:
    manifests = render(values)
    image_prefix = f"{chart_values()['image']['repository']}:"
    return manifests, workloads(manifests, image_prefix)


def plan_release(
    database_url: str, redis: LocalRedisServer | LocalCluster, image: ImageConfig
) -> tuple[list[Any], list[Launch], AddressBook]:
    """``redis`` a cluster: the stand-in name is its first master, a startup node (the
    client then finds every node at the 127.0.0.1 address the cluster announces)."""
    cluster = isinstance(redis, LocalCluster)
    manifests, found = chart_workloads(release_values(database_url, cluster=cluster))
    launches = [plan(workload, image, port_below_ephemeral_range) for workload in found]
    book = AddressBook(NAMESPACE)
    book.add(*STAND_IN_REDIS, redis.port)
    book.add(*STAND_IN_POSTGRES, int(urlsplit(database_url).port or 0))
    book.add_services(manifests, launches)
    for launch in launches:
        book.map_env(launch)
    return manifests, launches, book


def unread(launches: list[Launch], image: ImageConfig) -> dict[str, list[str]]:
    """Per workload: ORDERFLOW_* variables (image's and chart's) the process never reads."""
    found = {}
    for launch in launches:
        names = unread_variables({**image.env, **launch.env}, settings_read_by(launch))
        if names:
            found[str(launch.workload)] = names
    return found


async def follow_to_delivered(ws_url: str) -> list[str]:
    """The statuses the gateway's WebSocket reports, snapshot first, until ``delivered``."""
    from websockets.asyncio.client import connect

    seen: list[str] = []
    async with asyncio.timeout(DELIVERED_TIMEOUT), connect(ws_url, open_timeout=15) as ws:
        while not seen or seen[-1] != "delivered":
            message = json.loads(await ws.recv())
            if message.get("type") in {"snapshot", "order.status"}:
                seen.append(str(message["status"]))
    return seen


def menu_stock(stack: ChartStack) -> dict[str, int]:
    status, body = http_json("GET", f"{stack.base_url('/api/v1/menu')}/api/v1/menu")
    assert status == 200, body
    return {item["id"]: item["stock"] for item in body["items"]}


def exercise(stack: ChartStack) -> dict[str, float]:
    """Seed, serve, order, follow, refill, stop: the release's life, with its timings."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    jobs = stack.launch("Job")
    assert jobs, "the release renders no Job (the seed Job was expected)"
    for job in jobs:
        done = stack.run_job(job)
        assert done.returncode == 0, f"{job.workload}: {done.stdout}{done.stderr}"
    timings["jobs_s"] = time.monotonic() - started
    try:
        timings["ready_s"] = stack.start_serving(READY_TIMEOUT)
        seeded = menu_stock(stack)
        assert seeded, "the seed Job left an empty menu"
        item = max(seeded, key=lambda i: seeded[i])
        assert seeded[item] >= ORDERED
        started = time.monotonic()
        order_url = f"{stack.base_url('/api/v1/orders')}/api/v1/orders"
        body = {"lines": [{"item_id": item, "quantity": ORDERED}]}
        status, order = http_json("POST", order_url, body)
        assert status == 201, order
        ws_url = f"{stack.base_url('/ws', 'ws')}/ws/v1/order-tracking/{order['id']}"
        statuses = asyncio.run(follow_to_delivered(ws_url))
        timings["order_to_delivered_s"] = time.monotonic() - started
        status, stored = http_json("GET", f"{order_url}/{order['id']}")
        assert status == 200, stored
        history = [entry["status"] for entry in stored["history"]]
        assert history[0] == "created" and history[-1] == "delivered", history
        assert statuses == [s for s in history if s in statuses], (statuses, history)
        assert menu_stock(stack)[item] == seeded[item] - ORDERED
        cronjobs = stack.launch("CronJob")
        assert cronjobs, "the release renders no CronJob (the refill CronJob was expected)"
        for cronjob in cronjobs:
            done = stack.run_job(cronjob)
            assert done.returncode == 0, f"{cronjob.workload}: {done.stdout}{done.stderr}"
        assert menu_stock(stack) == seeded, "refill did not restore the seeded stock"
    finally:
        codes = stack.stop()
    assert codes and all(code == 0 for code in codes.values()), codes
    log.info("timings: %s", {k: round(v, 1) for k, v in timings.items()})
    return timings


@pytest.fixture
def flushed_redis(redis_server: LocalRedisServer) -> LocalRedisServer:
    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@pytest.fixture(scope="session")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ImageConfig]]:
    """The project's image built on the stand-in base (skipped where podman cannot run)."""
    reason = containers.why_unavailable()
    if reason is not None:
        if os.environ.get("CI") and "not installed" in reason:
            pytest.fail(reason, pytrace=False)  # .ci/run installs them
        pytest.skip(reason)
    started = time.monotonic()
    try:
        base = containers.base_image()
        containers.check_runs(base)
    except containers.EngineUnavailable as exc:
        pytest.skip(str(exc))
    log.info("base image ready in %.0fs", time.monotonic() - started)
    started = time.monotonic()
    build_log = tmp_path_factory.mktemp("image") / "build.log"
    tag = containers.build_image(base, build_log)
    log.info("image %s built in %.0fs", tag, time.monotonic() - started)
    yield tag, containers.image_config(tag)


@pytest.fixture
def container_release(
    built_image: tuple[str, ImageConfig],
    flushed_redis: LocalRedisServer,
    postgres_url: str,
    tmp_path: Path,
) -> ChartStack:
    """The rendered release planned onto the built image, nothing started yet."""
    tag, image = built_image
    manifests, launches, book = plan_release(postgres_url, flushed_redis, image)
    assert unread(launches, image) == {}
    runner = ContainerRunner(tag, image, prefix=f"orderflow-test-{uuid.uuid4().hex[:6]}")
    return ChartStack(manifests, launches, book, runner, tmp_path)


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_chart_workloads_run_as_containers_of_the_image(container_release: ChartStack) -> None:
    exercise(container_release)


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_chart_workloads_run_as_containers_on_a_redis_cluster(
    built_image: tuple[str, ImageConfig],
    flushed_cluster: LocalCluster,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """The containers again, the chart rendered for an external Redis Cluster (one
    startup node, 3 partitions) and run against the session's private cluster."""
    tag, image = built_image
    manifests, launches, book = plan_release(postgres_url, flushed_cluster, image)
    assert unread(launches, image) == {}
    assert {launch.env["ORDERFLOW_TOPIC_PARTITIONS"] for launch in launches} == {"3"}
    runner = ContainerRunner(tag, image, prefix=f"orderflow-test-{uuid.uuid4().hex[:6]}")
    exercise(ChartStack(manifests, launches, book, runner, tmp_path))


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_path_left_read_only_fails_the_container(container_release: ChartStack) -> None:
    """The negative control of the read-only root: the API's container without its
    emptyDir exits during start (with 2 HTTP workers it makes a prometheus multiprocess
    directory under /tmp), so the tmpfs mounts are what makes the test above pass,
    not a writable layer podman adds."""
    release = container_release
    api_port = urlsplit(release.base_url("/api/v1/orders")).port
    (api,) = [launch for launch in release.launches if api_port in launch.local_ports.values()]
    without_tmp = dataclasses.replace(api.workload, writable={})
    stack = ChartStack(
        release.manifests,
        [dataclasses.replace(api, workload=without_tmp)],
        release.book,
        release.runner,
        release.logs,
    )
    try:
        with pytest.raises(ChildExited) as failure:
            stack.start_serving(READY_TIMEOUT)
    finally:
        stack.stop()
    # Python's tempfile found no writable directory: /tmp, /var/tmp, /usr/tmp, /app.
    assert "tempfile" in str(failure.value), failure.value


@pytest.fixture
def flushed_cluster(redis_cluster: LocalCluster) -> LocalCluster:
    for master in redis_cluster.masters:
        client = redis_cluster.client(master)
        try:
            client.flushall()
        finally:
            client.close()
    return redis_cluster


@pytest.mark.postgres
@pytest.mark.timeout(600)
@pytest.mark.parametrize("redis_kind", ["server", "cluster"])
def test_chart_workloads_run_as_plain_processes(
    redis_kind: str, postgres_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same wiring without containers: the installed commands, the Dockerfile's ENV;
    on the session's server, then on the session's private cluster (the external-cluster
    wiring: a ``redis+cluster://`` URL and 3 partitions in every workload)."""
    image = runtime_stage_config()
    fixture = "flushed_redis" if redis_kind == "server" else "flushed_cluster"
    redis: LocalRedisServer | LocalCluster = request.getfixturevalue(fixture)
    manifests, launches, book = plan_release(postgres_url, redis, image)
    if redis_kind == "cluster":
        assert {launch.env["ORDERFLOW_TOPIC_PARTITIONS"] for launch in launches} == {"3"}
        assert all(launch.env["ORDERFLOW_REDIS_URL"].startswith("redis+cluster://127.0.0.1:")
                   for launch in launches)  # fmt: skip
    assert unread(launches, image) == {}
    runner: Runner = ProcessRunner(image, Path(sys.executable).parent, tmp_path)
    exercise(ChartStack(manifests, launches, book, runner, tmp_path))
