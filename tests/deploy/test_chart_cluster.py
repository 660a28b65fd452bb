"""The chart on an external Redis Cluster: `ci/external-cluster-values.yaml`, and the URL
kept in a Secret of the user's (`redis.externalSecret`).

Every orderflow workload (Deployments, Jobs, CronJobs) must get the cluster URL and the
partitions setting; the bundled Redis must not be rendered; KEDA must scale on every
partition with its cluster scaler; and the combinations the chart cannot serve must be
refused with a message saying why.
"""

from __future__ import annotations

import base64
from typing import Any

import helm_python as helm
import pytest

from tests.deploy.rendering import RELEASE, find, notes, objects, render, rendered, value_set
from tests.deploy.workloads import Workload, workloads

NAME = "external-cluster"
PARTITIONED = {
    "orders-stream",
    "deliveries-stream",
    "order-status-stream",
    "delivery-status-stream",
    "simulate-order-stream",
    "simulate-delivery-stream",
}


def _ours(manifests: list[Any]) -> list[Workload]:
    found = workloads(manifests, "orderflow:")
    assert {w.kind for w in found} >= {"Deployment", "Job", "CronJob"}
    return found


def test_every_workload_gets_the_cluster_url_and_the_partitions() -> None:
    values = value_set(NAME)
    url = values["redis"]["externalUrl"]
    assert url.startswith("rediss+cluster://")
    for workload in _ours([*rendered(NAME)]):
        assert workload.env["ORDERFLOW_REDIS_URL"] == url, workload
        assert workload.env["ORDERFLOW_TOPIC_PARTITIONS"] == "6", workload
    assert not [m for m in rendered(NAME) if "redis" in m.name and m.kind != "ScaledObject"
                and m.kind != "TriggerAuthentication"]  # fmt: skip
    assert not objects(NAME, "StatefulSet")
    assert "a Redis Cluster; per-order topics in 6 partition(s)" in notes(values)


def test_keda_scales_on_every_partition_with_the_cluster_scaler() -> None:
    values = value_set(NAME)
    hosts = values["redis"]["externalUrl"].split("@", 1)[1]
    scaled = objects(NAME, "ScaledObject")
    assert scaled
    for obj in scaled:
        streams: dict[str, set[str]] = {}
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "redis-cluster-streams"
            meta = trigger["metadata"]
            assert meta["addresses"] == hosts and "address" not in meta
            assert meta["enableTLS"] == "true"
            assert trigger["authenticationRef"]["name"] == f"{RELEASE}-redis"
            topic, _, index = meta["stream"].rpartition(".p")
            if topic in PARTITIONED:
                streams.setdefault(topic, set()).add(index)
            else:
                streams.setdefault(meta["stream"], set())
        for topic, indexes in streams.items():
            assert topic in PARTITIONED and indexes == {str(i) for i in range(6)}, obj
    secret = find(NAME, "Secret", f"{RELEASE}-secrets")["data"]
    assert base64.b64decode(secret["redis-password"]).decode() == "redis-secret"


def test_the_url_can_stay_in_the_users_secret() -> None:
    manifests = render(
        {
            "redis": {"enabled": False, "externalSecret": {"name": "shop-redis", "key": "url"}},
            "config": {"topicPartitions": 3},
        }
    )
    pods = [m.obj for m in manifests if m.kind in {"Deployment", "Job", "CronJob"}]
    refs = []
    for obj in pods:
        spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
        for container in spec["template"]["spec"]["containers"]:
            if container["image"].startswith("orderflow:"):
                (var,) = [e for e in container["env"] if e["name"] == "ORDERFLOW_REDIS_URL"]
                refs.append(var["valueFrom"]["secretKeyRef"])
    assert refs and all(ref == {"name": "shop-redis", "key": "url"} for ref in refs)
    (secret,) = [m.obj for m in manifests if m.kind == "Secret" and m.name == f"{RELEASE}-secrets"]
    assert "redis-url" not in secret["data"]
    assert not [m for m in manifests if m.kind == "StatefulSet" and "redis" in m.name]


@pytest.mark.parametrize(
    ("overrides", "error", "complaint"),
    [
        ({"redis": {"enabled": False}}, helm.HelmValuesError, "minLength: got 0"),
        (
            {"redis": {"enabled": False, "externalUrl": "redis+sentinel://h:26379"}},
            helm.HelmValuesError,
            "does not match pattern",
        ),
        (
            {
                "redis": {"enabled": False, "externalSecret": {"name": "r"}},
                "keda": {"enabled": True},
            },
            helm.HelmRenderError,
            "keda.enabled reads the Redis address and password from redis.externalUrl",
        ),
        ({"config": {"topicPartitions": 0}}, helm.HelmValuesError, "minimum"),
    ],
)
def test_what_the_chart_cannot_serve_is_refused(
    overrides: dict[str, Any], error: type[Exception], complaint: str
) -> None:
    with pytest.raises(error) as refused:
        render(overrides)
    assert complaint in str(refused.value)
