"""What the objects Helm rendered mean: wiring between them, and each value set's intent.

Helm renders and kubernetes-validate checks each object on its own
(test_chart_helm.py); neither notices a Service whose target port no container
names, a Secret key nobody writes, or an external-store release that still
ships a MongoDB StatefulSet. Those are checked here, on the rendered objects.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from typing import Any

import pytest

from tests.deploy.paths import CHART, OLDEST_KUBERNETES, load_yaml
from tests.deploy.rendering import (
    DEFAULTS,
    NAMESPACE,
    RELEASE,
    find,
    notes,
    objects,
    pod_spec,
    rendered,
    value_set,
    value_set_names,
)

VALUE_SETS = value_set_names()
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")
HOOK = "helm.sh/hook"


def _workloads(name: str) -> list[dict[str, Any]]:
    return [m.obj for m in rendered(name) if m.kind in WORKLOADS]


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("labels", {}))
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(spec["template"]["metadata"].get("labels", {}))


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _selected(name: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in _workloads(name) if selector.items() <= _pod_labels(w).items()]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_service_selects_pods_that_name_its_target_port(name):
    wrong = []
    for service in objects(name, "Service"):
        pods = _selected(name, service["spec"]["selector"])
        if not pods:
            wrong.append(f"{service['metadata']['name']}: selects no pod")
        for port in service["spec"]["ports"]:
            for pod in pods:
                named = {p.get("name") for c in _containers(pod) for p in c.get("ports", [])}
                if port["targetPort"] not in named:
                    wrong.append(f"{service['metadata']['name']}: {port['targetPort']} not named")
    assert wrong == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_secret_and_configmap_reference_resolves(name):
    secrets = {s["metadata"]["name"]: set(s.get("data", {})) for s in objects(name, "Secret")}
    configs = {c["metadata"]["name"]: set(c.get("data", {})) for c in objects(name, "ConfigMap")}
    missing = []
    for workload in _workloads(name):
        spec = pod_spec(workload)
        for container in _containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], set()):
                    missing.append(f"{container['name']}: secret {ref['name']}/{ref['key']}")
            for source in container.get("envFrom", []):
                if source["configMapRef"]["name"] not in configs:
                    missing.append(f"{container['name']}: configmap {source['configMapRef']}")
        for volume in spec.get("volumes", []):
            for kind, known in (("configMap", configs), ("secret", secrets)):
                if kind in volume:
                    ref_name = volume[kind].get("name") or volume[kind].get("secretName")
                    if ref_name not in known:
                        missing.append(f"{workload['metadata']['name']}: {kind} {ref_name}")
    for auth in objects(name, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            if ref["key"] not in secrets.get(ref["name"], set()):
                missing.append(f"TriggerAuthentication: {ref['name']}/{ref['key']}")
    assert missing == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_scalers_and_budgets_target_rendered_workloads(name):
    deployments = {d["metadata"]["name"] for d in objects(name, "Deployment")}
    for hpa in objects(name, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for scaled in objects(name, "ScaledObject"):
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    for pdb in objects(name, "PodDisruptionBudget"):
        assert _selected(name, pdb["spec"]["selector"]["matchLabels"]), pdb["metadata"]["name"]


def _hook_weight(job: dict[str, Any]) -> int:
    annotations = job["metadata"]["annotations"]
    assert {"post-install", "post-upgrade"} <= set(annotations[HOOK].split(","))
    return int(annotations["helm.sh/hook-weight"])


def test_init_jobs_are_hooks_in_order_replica_set_then_user_then_menu():
    replica_set = find(DEFAULTS, "Job", f"{RELEASE}-mongodb-init-replica-set")
    user = find(DEFAULTS, "Job", f"{RELEASE}-mongodb-create-user")
    seed = find(DEFAULTS, "Job", f"{RELEASE}-seed")
    assert _hook_weight(replica_set) < _hook_weight(user) < _hook_weight(seed)


def _routes(name: str) -> dict[str, str]:
    return {
        path["path"]: path["backend"]["service"]["name"]
        for ingress in objects(name, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }


def test_ingress_routes_api_ws_and_root():
    api, gateway = f"{RELEASE}-api", f"{RELEASE}-gateway"
    public = {"/api/v1/menu": api, "/api/v1/orders": api, "/static": api, "/": api}
    assert _routes(DEFAULTS) == {**public, "/ws": gateway}
    assert _routes("no-gateway") == {**public, "/ws": api}
    annotations = find(DEFAULTS, "Ingress", f"{RELEASE}-ws")["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def test_http_roles_probe_healthz_and_readyz():
    for role in ("api", "gateway"):
        (container,) = pod_spec(find(DEFAULTS, "Deployment", f"{RELEASE}-{role}"))["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_redis_runs_with_aof_and_noeviction():
    redis = find(DEFAULTS, "StatefulSet", f"{RELEASE}-redis")
    script = pod_spec(redis)["containers"][0]["command"][-1]
    assert "--appendonly yes" in script
    assert "--maxmemory-policy noeviction" in script


def test_mongodb_runs_as_a_keyfile_authenticated_replica_set():
    mongodb = find(DEFAULTS, "StatefulSet", f"{RELEASE}-mongodb")
    (mongod,) = pod_spec(mongodb)["containers"]
    assert "--replSet" in mongod["args"]
    assert "--keyFile" in mongod["args"]
    assert {e["name"] for e in mongod["env"]} >= {"MONGO_INITDB_ROOT_PASSWORD"}
    secret = find(DEFAULTS, "Secret", f"{RELEASE}-secrets")
    assert len(base64.b64decode(secret["data"]["mongodb-keyfile"])) >= 6


def test_files_the_chart_embeds_are_rendered_whole():
    scripts = find(DEFAULTS, "ConfigMap", f"{RELEASE}-mongodb-scripts")["data"]
    for path in sorted((CHART / "files" / "mongo").glob("*.js")):
        assert scripts[path.name] == path.read_text(encoding="utf-8"), path.name
    dashboards = sorted((CHART / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        config = find("keda-monitoring", "ConfigMap", f"{RELEASE}-dashboard-{path.stem}")
        assert config["data"][path.name] == path.read_text(encoding="utf-8").rstrip("\n")


def test_external_servers_replace_the_bundled_ones():
    values = value_set("external")
    kinds = {m.kind for m in rendered("external")}
    assert "StatefulSet" not in kinds
    assert "PersistentVolumeClaim" not in kinds
    assert not [j for j in objects("external", "Job") if "mongodb" in j["metadata"]["name"]]
    data = find("external", "Secret", f"{RELEASE}-secrets")["data"]
    urls = {key: base64.b64decode(data[key]).decode() for key in ("redis-url", "store-url")}
    assert urls == {
        "redis-url": values["redis"]["externalUrl"],
        "store-url": values["mongodb"]["externalUrl"],
    }
    for scaled in objects("external", "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == "cache.example.net:6380"
            assert trigger["metadata"]["enableTLS"] == "true"
    assert "MongoDB replica-set init" not in notes(values)


def _store_url(name: str) -> str:
    data = find(name, "Secret", f"{RELEASE}-secrets")["data"]
    return base64.b64decode(data["store-url"]).decode()


def test_bundled_postgresql_replaces_mongodb():
    name = "postgres"
    statefulsets = {s["metadata"]["name"] for s in objects(name, "StatefulSet")}
    assert statefulsets == {f"{RELEASE}-postgresql", f"{RELEASE}-redis"}
    assert not [m for m in rendered(name) if "mongodb" in m.name]
    postgres = find(name, "StatefulSet", f"{RELEASE}-postgresql")
    (server,) = pod_spec(postgres)["containers"]
    assert server["image"].startswith("postgres:")
    env = {e["name"]: e for e in server["env"]}
    secret = find(name, "Secret", f"{RELEASE}-secrets")["data"]
    password = base64.b64decode(secret["postgresql-password"]).decode()
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "postgresql-password"
    # The data directory is below the claim's mount, which holds lost+found.
    (data,) = [m for m in server["volumeMounts"] if m["name"] == "data"]
    assert env["PGDATA"]["value"].startswith(data["mountPath"] + "/")
    assert [c["metadata"]["name"] for c in postgres["spec"]["volumeClaimTemplates"]] == ["data"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "pg_isready" in server[probe]["exec"]["command"][-1]
    service = find(name, "Service", f"{RELEASE}-postgresql")
    user, db = env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]
    host = f"{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
    assert _store_url(name) == f"postgresql://{user}:{password}@{host}/{db}"
    assert "Store: PostgreSQL" in notes(value_set(name))


def test_external_postgresql_reaches_the_pods_unchanged():
    name = "external-postgres"
    values = value_set(name)
    assert not objects(name, "StatefulSet")
    assert not [m for m in rendered(name) if "mongodb" in m.name or "postgresql" in m.name]
    assert _store_url(name) == values["postgresql"]["externalUrl"]
    assert _store_url(name).startswith("postgresql://")  # asyncpg, the image's postgres extra
    assert "Store: external PostgreSQL" in notes(values)


def test_keda_scales_every_worker_and_the_service_monitor_sees_every_metrics_port():
    name = "keda-monitoring"
    workers = {
        d["metadata"]["name"]: d
        for d in objects(name, "Deployment")
        if d["metadata"]["name"].endswith("-worker")
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in objects(name, "ScaledObject")}
    assert scaled == set(workers)
    assert all("replicas" not in d["spec"] for d in workers.values())  # KEDA owns the count
    (monitor,) = objects(name, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    watched = [
        s for s in objects(name, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    expected = {f"{RELEASE}-api", f"{RELEASE}-gateway", *(f"{w}-metrics" for w in workers)}
    assert {s["metadata"]["name"] for s in watched} >= expected
    for service in watched:
        assert {p["name"] for p in service["spec"]["ports"]} & ports, service["metadata"]["name"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_worker_is_probed_on_its_admin_port(name):
    """Liveness on /livez, readiness on /readyz, both on the port the worker is told
    to serve (ORDERFLOW_ADMIN_PORT) — the runtime's admin server; see
    tests/runtime/test_admin_port.py for what the two answers mean."""
    workers = [d for d in objects(name, "Deployment") if d["metadata"]["name"].endswith("-worker")]
    assert workers
    for worker in workers:
        (container,) = pod_spec(worker)["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert env["ORDERFLOW_ADMIN_PORT"] == str(ports["admin"])
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert (live["path"], live["port"]) == ("/livez", "admin")
        assert (ready["path"], ready["port"]) == ("/readyz", "admin")


def test_minimal_runs_one_replica_of_everything_without_ingress():
    name = "minimal"
    kinds = {m.kind for m in rendered(name)}
    assert not kinds & {"Ingress", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    for kind in ("Deployment", "StatefulSet"):
        for obj in objects(name, kind):
            assert obj["spec"]["replicas"] == 1, obj["metadata"]["name"]
            assert not obj["spec"].get("volumeClaimTemplates"), obj["metadata"]["name"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_mongo_scripts_are_valid_javascript():
    scripts = sorted((CHART / "files" / "mongo").glob("*.js"))
    assert len(scripts) == 2
    for script in scripts:
        result = subprocess.run(
            ["node", "--check", str(script)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr


def test_chart_kube_version_floor_is_the_oldest_validated_version():
    assert load_yaml(CHART / "Chart.yaml")["kubeVersion"] == f">={OLDEST_KUBERNETES}-0"
