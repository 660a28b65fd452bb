"""deploy/compose.yaml, checked structurally (no Docker engine or compose plugin here).

Proves that every role runs from the one image with a command the real CLI
accepts, that Redis keeps an AOF with noeviction, that MongoDB is a replica set
initialised by a one-shot service, that dependencies point at services that
exist with valid conditions, that every bind-mounted file exists, and that
Prometheus scrapes every orderflow service on the right port.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.paths import COMPOSE, DASHBOARDS, DEPLOY, GRAFANA_PROVISIONING, load_yaml

ORDERFLOW_ROLES = {
    "api": ["api"],
    "gateway": ["api", "--role", "gateway"],
    "orders-worker": ["worker", "orderflow.agents.orders:app"],
    "delivery-worker": ["worker", "orderflow.agents.delivery:app"],
    "notifications-worker": ["worker", "orderflow.agents.notifications:app"],
    "simulator": ["worker", "orderflow.agents.simulator:app"],
    "seed": ["seed"],
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


def test_every_role_and_dependency_is_a_service(compose):
    services = compose["services"]
    expected = set(ORDERFLOW_ROLES) | {"redis", "mongodb", "mongo-init", "prometheus", "grafana"}
    assert expected <= set(services)


def test_orderflow_roles_share_one_image_and_run_their_command(compose):
    services = compose["services"]
    for name, command in ORDERFLOW_ROLES.items():
        service = services[name]
        assert service["image"] == "orderflow:local", name
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").is_file()
        assert service["command"] == command, name
        env = service["environment"]
        assert env["ORDERFLOW_REDIS_URL"].startswith("redis://redis:")
        assert env["ORDERFLOW_STORE_URL"].startswith("mongodb://mongodb:")
        assert "replicaSet=rs0" in env["ORDERFLOW_STORE_URL"]
        assert service["read_only"] is True


def test_every_role_serves_metrics_on_the_scraped_admin_port(compose):
    for name in (
        "api", "gateway", "orders-worker", "delivery-worker", "notifications-worker", "simulator"
    ):  # fmt: skip
        assert compose["services"][name]["environment"]["ORDERFLOW_ADMIN_PORT"] == "9100"


def test_redis_keeps_an_aof_and_never_evicts(compose):
    command = compose["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])


def test_mongodb_is_a_replica_set_initialised_on_first_start(compose):
    services = compose["services"]
    command = services["mongodb"]["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    init = services["mongo-init"]
    assert init["environment"]["RS_NAME"] == "rs0"
    assert init["environment"]["RS_MEMBERS"] == "mongodb:27017"
    assert "/scripts/init-replica-set.js" in init["command"]
    assert init["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    for name in ORDERFLOW_ROLES:
        needs = services[name]["depends_on"]
        assert needs["mongo-init"]["condition"] == "service_completed_successfully"
        assert needs["redis"]["condition"] == "service_healthy"


def test_dependencies_exist_and_use_valid_conditions(compose):
    services = compose["services"]
    for name, service in services.items():
        needs = service.get("depends_on", {})
        items = needs.items() if isinstance(needs, dict) else ((n, {}) for n in needs)
        for dependency, spec in items:
            assert dependency in services, f"{name} -> {dependency}"
            if "condition" in spec:
                assert spec["condition"] in CONDITIONS
                if spec["condition"] == "service_healthy":
                    assert "healthcheck" in services[dependency], dependency


def test_bind_mounts_exist(compose):
    checked = 0
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
                checked += 1
            else:
                assert source in compose["volumes"], source
    assert checked >= 5


def test_prometheus_scrapes_every_orderflow_service(compose):
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {
        "api:9100",
        "gateway:9100",
        "orders-worker:9100",
        "delivery-worker:9100",
        "notifications-worker:9100",
        "simulator:9100",
    }
    for target in targets:
        assert target.split(":")[0] in compose["services"]


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "orderflow.yaml")
    path = provider["providers"][0]["options"]["path"]
    # The chart's dashboards are the one copy; compose mounts them where Grafana looks.
    source = next(src for src, target in mounts.items() if target == path)
    assert (DEPLOY / source).resolve() == DASHBOARDS.resolve()
    assert list(DASHBOARDS.glob("*.json"))
    datasource = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert datasource["datasources"][0]["uid"] == "prometheus"


def test_proxy_sends_websockets_to_the_gateway():
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    ws = conf.split("location /ws/")[1].split("}")[0]
    assert "proxy_pass http://gateway:8000" in ws
    assert "Upgrade $http_upgrade" in ws
    assert "proxy_read_timeout 3600s" in ws
    assert "proxy_pass http://api:8000" in conf.split("location / ")[1]
