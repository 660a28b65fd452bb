"""What the rendered NetworkPolicies and Ingresses let through.

NetworkPolicies: a small evaluator of Kubernetes' rules over the rendered
objects (policies select pods by labels in their namespace; ingress and egress
are each allowed when no policy of that type selects the pod, else when some
rule of a selecting policy matches the peer and the port; a connection needs
the sender's egress and the receiver's ingress). The pods are the release's own
workloads as rendered, plus a few outsiders (ingress controller, Prometheus,
KEDA, kube-dns, a stranger in the release's namespace, a look-alike in another
namespace, external addresses). Each pair the design allows or forbids is
asked of the policies.

What the Ingresses route is in test_chart_ingress.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import helm_python as helm
import pytest

from tests.deploy.rendering import (
    DEFAULTS,
    NAMESPACE,
    Manifest,
    objects,
    pod_spec,
    render,
    rendered,
    value_set,
)

NETPOL = "keda-monitoring"  # the ci value set with NetworkPolicies, KEDA and MongoDB on
EXTERNAL = "external-postgres"  # NetworkPolicies on, external Redis and PostgreSQL by CIDR
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")
TCP, UDP = "TCP", "UDP"


@dataclass(frozen=True)
class Peer:
    """A pod (labels, namespace, named container ports) or an address outside the cluster."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace: str = NAMESPACE
    ports: dict[str, int] = field(default_factory=dict)
    ip: str | None = None

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(rule_peer: dict[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False  # pod IPs in ipBlocks are implementation-defined: not counted on
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if peer.ip is not None:
        return False
    if "namespaceSelector" in rule_peer:
        in_namespace = _selects(rule_peer["namespaceSelector"], peer.namespace_labels)
    else:
        in_namespace = peer.namespace == policy_namespace
    return in_namespace and _selects(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(rule: dict[str, Any], target: Peer, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", TCP) != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = target.ports.get(wanted)  # a named port is the receiving pod's
        if wanted is not None and wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def _allowed(
    policies: list[dict[str, Any]],
    kind: str,
    pod: Peer,
    other: Peer,
    port: int,
    protocol: str,
    target: Peer,
) -> bool:
    """Whether `pod`'s policies of this kind ("Ingress"/"Egress") allow traffic with `other`."""
    if pod.ip is not None:
        return True  # not a pod: no policy applies to it
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == pod.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in selecting:
        policy_namespace = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get(key, []):
            if not _port_matches(rule, target, port, protocol):
                continue
            peers = rule.get(peers_key)
            if peers is None or any(_peer_matches(p, policy_namespace, other) for p in peers):
                return True
    return False


def connects(
    policies: list[dict[str, Any]], source: Peer, target: Peer, port: int, protocol: str = TCP
) -> bool:
    return _allowed(policies, "Egress", source, target, port, protocol, target) and _allowed(
        policies, "Ingress", target, source, port, protocol, target
    )


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"]["labels"])
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(spec["template"]["metadata"]["labels"])


def release_pods(manifests: list[Manifest]) -> dict[str, Peer]:
    """One pod per rendered workload, by its component label."""
    pods: dict[str, Peer] = {}
    for manifest in manifests:
        if manifest.kind not in WORKLOADS:
            continue
        labels = _pod_labels(manifest.obj)
        spec = pod_spec(manifest.obj)
        ports = {
            p["name"]: p["containerPort"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]
            for p in c.get("ports", [])
            if "name" in p
        }
        pods[labels["app.kubernetes.io/component"]] = Peer(manifest.name, labels, ports=ports)
    return pods


INGRESS_NGINX = Peer(
    "ingress-nginx-controller", {"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx"
)
PROMETHEUS = Peer("prometheus", {"app.kubernetes.io/name": "prometheus"}, "monitoring")
KEDA = Peer("keda-operator", {"app.kubernetes.io/name": "keda-operator"}, "keda")
KUBE_DNS = Peer("coredns", {"k8s-app": "kube-dns"}, "kube-system")
STRANGER = Peer("stranger", {"app": "something-else"})  # another app in the release's namespace
INTERNET = Peer("example.com", ip="93.184.215.14")


def _look_alike(pod: Peer) -> Peer:
    """A pod with the release's labels in another namespace: not the release's."""
    return Peer(f"{pod.name}-elsewhere", pod.labels, "elsewhere")


def _policies(manifests: list[Manifest]) -> list[dict[str, Any]]:
    return [m.obj for m in manifests if m.kind == "NetworkPolicy"]


ORDERFLOW_PODS = ("api", "gateway", "orders-worker", "delivery-worker", "notifications-worker",
                  "simulator-worker", "seed", "refill")  # fmt: skip
WORKERS = ORDERFLOW_PODS[2:6]


def test_no_network_policy_unless_asked():
    assert objects(DEFAULTS, "NetworkPolicy") == []
    assert value_set(NETPOL)["networkPolicy"]["enabled"] is True


@pytest.mark.parametrize("name", [NETPOL, EXTERNAL])
def test_every_policy_selects_pods_of_the_release(name):
    pods = release_pods(rendered(name)).values()
    empty = [
        p["metadata"]["name"]
        for p in _policies(rendered(name))
        if not any(_selects(p["spec"]["podSelector"], pod.labels) for pod in pods)
    ]
    assert empty == []


def _bundled() -> tuple[list[dict[str, Any]], dict[str, Peer]]:
    manifests = rendered(NETPOL)
    return _policies(manifests), release_pods(manifests)


def _named(pair: tuple[Peer, Peer, int, str]) -> str:
    source, target, port, protocol = pair
    return f"{source.name} -> {target.name}:{port}/{protocol}"


def test_bundled_policies_allow_what_the_design_needs():
    policies, pods = _bundled()
    http, admin = pods["api"].ports["http"], pods["orders-worker"].ports["admin"]
    allowed = [
        (INGRESS_NGINX, pods["api"], http, TCP),
        (INGRESS_NGINX, pods["gateway"], http, TCP),
        (pods["test"], pods["api"], http, TCP),
        (PROMETHEUS, pods["api"], admin, TCP),
        (PROMETHEUS, pods["gateway"], admin, TCP),
        *[(PROMETHEUS, pods[w], admin, TCP) for w in WORKERS],
        *[(pods[p], pods["redis"], 6379, TCP) for p in ORDERFLOW_PODS],
        *[(pods[p], pods["mongodb"], 27017, TCP) for p in ORDERFLOW_PODS],
        *[(pods[p], KUBE_DNS, 53, proto) for p in ORDERFLOW_PODS for proto in (UDP, TCP)],
        (pods["mongodb"], pods["mongodb"], 27017, TCP),  # replica-set members
        (pods["mongodb-init"], pods["mongodb"], 27017, TCP),
        (KEDA, pods["redis"], 6379, TCP),  # keda.enabled: the operator reads the lag
    ]
    assert [_named(pair) for pair in allowed if not connects(policies, *pair)] == []


def test_bundled_policies_refuse_everything_else_asked():
    policies, pods = _bundled()
    http, admin = pods["api"].ports["http"], pods["orders-worker"].ports["admin"]
    denied = [
        (pods["orders-worker"], pods["delivery-worker"], admin, TCP),  # worker → worker
        (pods["orders-worker"], pods["api"], http, TCP),  # only the test pod, inside
        (pods["api"], pods["gateway"], http, TCP),
        (INGRESS_NGINX, pods["orders-worker"], admin, TCP),
        (INGRESS_NGINX, pods["api"], admin, TCP),  # metrics are for Prometheus only
        (PROMETHEUS, pods["api"], http, TCP),  # and Prometheus has no business on http
        (INGRESS_NGINX, pods["redis"], 6379, TCP),
        (INGRESS_NGINX, pods["mongodb"], 27017, TCP),
        (PROMETHEUS, pods["redis"], 6379, TCP),
        (STRANGER, pods["redis"], 6379, TCP),  # outside the release, same namespace
        (STRANGER, pods["mongodb"], 27017, TCP),
        (STRANGER, pods["api"], http, TCP),
        (STRANGER, pods["orders-worker"], admin, TCP),
        (_look_alike(pods["api"]), pods["redis"], 6379, TCP),  # release labels, other namespace
        (_look_alike(pods["test"]), pods["api"], http, TCP),
        (pods["api"], pods["redis"], 6380, TCP),  # only the server's port
        (pods["api"], INTERNET, 443, TCP),  # egress: Redis, the store and DNS only
        (pods["orders-worker"], INTERNET, 6379, TCP),
        (pods["orders-worker"], INGRESS_NGINX, 80, TCP),
        (pods["api"], KUBE_DNS, 8080, TCP),
        (pods["seed"], pods["api"], http, TCP),
    ]
    assert [_named(pair) for pair in denied if connects(policies, *pair)] == []


def test_postgresql_in_the_release_is_reached_only_by_the_release():
    manifests = render({**value_set("postgres"), "networkPolicy": {"enabled": True}})
    policies, pods = _policies(manifests), release_pods(manifests)
    assert "mongodb" not in pods
    for name in ORDERFLOW_PODS:
        assert connects(policies, pods[name], pods["postgresql"], 5432), name
        assert not connects(policies, pods[name], pods["postgresql"], 27017), name
    assert not connects(policies, STRANGER, pods["postgresql"], 5432)
    assert not connects(policies, KEDA, pods["redis"], 6379)  # keda.enabled is false here


def test_external_servers_are_reached_by_their_cidrs_and_ports_only():
    manifests = rendered(EXTERNAL)
    policies, pods = _policies(manifests), release_pods(manifests)
    assert not {"redis", "postgresql", "mongodb"} & pods.keys()
    network = value_set(EXTERNAL)["networkPolicy"]
    redis_ip = str(next(ipaddress.ip_network(network["externalRedis"]["cidrs"][0]).hosts()))
    store_ip = network["externalStore"]["cidrs"][0].split("/")[0]
    redis, store = Peer("redis", ip=redis_ip), Peer("store", ip=store_ip)
    for name in ORDERFLOW_PODS:
        assert connects(policies, pods[name], redis, 6379), name
        assert connects(policies, pods[name], store, 5432), name
        assert not connects(policies, pods[name], store, 6379), name
        assert not connects(policies, pods[name], redis, 5432), name
        assert not connects(policies, pods[name], Peer("other", ip="10.30.0.12"), 5432), name
        assert connects(policies, pods[name], KUBE_DNS, 53, UDP), name


COLLECTOR = Peer("otel-collector", {"app.kubernetes.io/name": "otel-collector"}, "observability")


def test_traces_reach_the_collector_named_and_only_when_named():
    collector_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}},
    }
    base = value_set(NETPOL)
    network = {**base["networkPolicy"], "tracesTo": [collector_peer]}
    manifests = render({**base, "networkPolicy": network})
    policies, pods = _policies(manifests), release_pods(manifests)
    default_policies = _policies(rendered(NETPOL))
    for name in ORDERFLOW_PODS:
        assert connects(policies, pods[name], COLLECTOR, 4318), name
        assert not connects(policies, pods[name], COLLECTOR, 4317), name  # gRPC: not asked
        assert not connects(policies, pods[name], _look_alike(COLLECTOR), 4318), name
        assert not connects(default_policies, pods[name], COLLECTOR, 4318), name


def test_an_external_server_without_cidrs_is_refused():
    values = {**value_set(EXTERNAL), "networkPolicy": {"enabled": True}}
    with pytest.raises(helm.HelmRenderError, match=r"networkPolicy\.externalRedis\.cidrs"):
        render(values)
