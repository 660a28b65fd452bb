"""The chart's templates, read statically, and its value fragments as Kubernetes objects.

Nothing here renders the chart (that needs Helm: see the chart README for
`helm lint` and `helm template | kubeconform`). What is checked for real:
- every template's actions parse and its if/range/with/define blocks balance;
- every function called exists in Go templates, Helm or Sprig (catches typos);
- every `include` names a template defined in `_helpers.tpl`;
- every apiVersion/kind a template emits exists in the Kubernetes schemas of the
  oldest supported release and of the newest one kubernetes-validate knows
  (catches removed APIs such as policy/v1beta1), CRDs excepted by name;
- the values copied verbatim into manifests (security contexts, resources,
  tolerations, persistence sizes, ingress settings, HPA bounds) form valid
  Kubernetes objects, validated with kubernetes-validate in strict mode;
- the hook order of the init Jobs, the Ingress routes, the probes;
- the files the chart embeds exist and are valid JavaScript (when node is present).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

from tests.deploy import gotemplate
from tests.deploy.paths import (
    CHART,
    OLDEST_KUBERNETES,
    TEMPLATES,
    chart_values,
    load_yaml,
    template_files,
)

CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
NEWEST_KUBERNETES = kv_utils.latest_version()
VERSIONS = (OLDEST_KUBERNETES, NEWEST_KUBERNETES)


@pytest.mark.parametrize("path", template_files(), ids=lambda p: p.name)
def test_template_actions_parse_and_blocks_balance(path):
    gotemplate.check_blocks(gotemplate.read(path))


def test_block_checker_rejects_broken_templates():
    with pytest.raises(gotemplate.TemplateSyntaxError):
        gotemplate.check_blocks("{{ if .Values.a }}x")
    with pytest.raises(gotemplate.TemplateSyntaxError):
        gotemplate.check_blocks("{{ end }}")
    with pytest.raises(gotemplate.TemplateSyntaxError):
        gotemplate.check_blocks("{{ .Values.a }")


NINDENT_LINE = re.compile(r"^( *)\{\{-?.*\|\s*nindent (\d+)\s*-?\}\}\s*$")


def test_nindent_matches_the_column_of_its_action():
    """`{{- ... | nindent N }}` alone on a line must sit at column N, or the YAML
    it produces is indented differently from the lines around it."""
    checked = 0
    wrong = []
    for path in template_files():
        for number, line in enumerate(gotemplate.read(path).splitlines(), 1):
            match = NINDENT_LINE.match(line)
            if match:
                checked += 1
                if len(match.group(1)) != int(match.group(2)):
                    wrong.append(f"{path.name}:{number}")
    assert checked > 50
    assert wrong == []


def test_only_functions_helm_provides_are_called():
    unknown = {
        f"{path.name}: {name}"
        for path in template_files()
        for name in gotemplate.functions_called(gotemplate.read(path))
        if name not in gotemplate.KNOWN_FUNCTIONS
    }
    assert unknown == set()
    assert "nindnet" not in gotemplate.KNOWN_FUNCTIONS  # the list is not a catch-all


def test_every_included_template_is_defined():
    texts = [gotemplate.read(path) for path in template_files()]
    defined = set().union(*(gotemplate.defined_templates(t) for t in texts))
    included = set().union(*(gotemplate.included_templates(t) for t in texts))
    assert included - defined == set()
    assert {"orderflow.fullname", "orderflow.labels", "orderflow.env"} <= defined


def _emitted_kinds() -> set[tuple[str, str]]:
    kinds = set()
    for path in template_files():
        text = gotemplate.read(path)
        for match in re.finditer(r"^apiVersion: (\S+)\s*\nkind: (\S+)", text, re.MULTILINE):
            kinds.add((match.group(1), match.group(2)))
    return kinds


def test_templates_emit_the_expected_kinds():
    kinds = {kind for _, kind in _emitted_kinds()}
    expected = {
        "Deployment", "StatefulSet", "Service", "Ingress", "Job", "CronJob", "ConfigMap",
        "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount",
        "ServiceMonitor", "ScaledObject", "TriggerAuthentication", "Pod",
    }  # fmt: skip
    assert expected <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_emitted_api_version_exists_in_kubernetes(version):
    missing = []
    for api_version, kind in sorted(_emitted_kinds() - CRD_KINDS):
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "probe"}}
        try:
            kubernetes_validate.validate(probe, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            missing.append(f"{api_version} {kind}")
        except kubernetes_validate.ValidationError:
            pass  # the schema exists; this bare probe need not be a complete object
    assert missing == []


def test_api_version_probe_notices_a_removed_api():
    probe = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(probe, NEWEST_KUBERNETES, strict=True)


def _pod(name: str, pod_security: Any, security: Any, resources: Any, section: Any) -> Any:
    spec: dict[str, Any] = {
        "securityContext": pod_security,
        "containers": [
            {
                "name": "main",
                "image": "orderflow:0.1.0",
                "securityContext": security,
                "resources": resources,
            }
        ],
    }
    for key in ("nodeSelector", "tolerations", "affinity"):
        if section.get(key):
            spec[key] = section[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _objects_from_values() -> list[Any]:
    """Kubernetes objects assembled from the value fragments the templates copy verbatim."""
    v = chart_values()
    objects = []
    roles = {"api": v["api"], "gateway": v["gateway"], **v["workers"]}
    for role, section in roles.items():
        objects.append(
            _pod(role, v["podSecurityContext"], v["securityContext"], section["resources"], section)
        )
        if section.get("imagePullSecrets"):
            objects[-1]["spec"]["imagePullSecrets"] = v["imagePullSecrets"]
    objects.append(
        _pod("job", v["podSecurityContext"], v["securityContext"], v["jobResources"], {})
    )
    for server in ("mongodb", "redis"):
        section = v[server]
        objects.append(
            _pod(server, section["podSecurityContext"], {}, section["resources"], section)
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": server},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": section["persistence"]["size"]}},
                },
            }
        )
    ingress = v["ingress"]
    objects.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "ws", "annotations": ingress["websocketAnnotations"]},
            "spec": {
                "ingressClassName": ingress["className"],
                "tls": [{"secretName": ingress["tls"]["secretName"], "hosts": [ingress["host"]]}],
                "rules": [
                    {
                        "host": ingress["host"],
                        "http": {
                            "paths": [
                                {
                                    "path": "/ws",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {"name": "gw", "port": {"name": "http"}}
                                    },
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )
    autoscaling = v["api"]["autoscaling"]
    objects.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": autoscaling["minReplicas"],
                "maxReplicas": autoscaling["maxReplicas"],
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": autoscaling["targetCPUUtilizationPercentage"],
                            },
                        },
                    }
                ],
            },
        }
    )
    return objects


@pytest.mark.parametrize("version", VERSIONS)
def test_value_fragments_are_valid_kubernetes(version):
    for obj in _objects_from_values():
        kubernetes_validate.validate(obj, version, strict=True)


def test_fragment_validation_notices_a_bad_fragment():
    pod = _pod("bad", {"runAsUser": "root"}, {}, {"requests": {"cpu": "1"}}, {})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, NEWEST_KUBERNETES, strict=True)


def _hook(path_name: str, job_marker: str) -> tuple[list[str], int]:
    text = gotemplate.read(TEMPLATES / path_name)
    start = text.index(job_marker)
    block = text[start : start + 900]
    hooks = re.search(r'"helm.sh/hook": ([\w,-]+)', block)
    weight = re.search(r'"helm.sh/hook-weight": "(-?\d+)"', block)
    assert hooks and weight, job_marker
    return hooks.group(1).split(","), int(weight.group(1))


def test_init_jobs_are_hooks_in_order_replica_set_then_user_then_menu():
    rs_hooks, rs_weight = _hook("mongodb-init-jobs.yaml", "-init-replica-set")
    user_hooks, user_weight = _hook("mongodb-init-jobs.yaml", "-create-user")
    seed_hooks, seed_weight = _hook("seed-job.yaml", "-seed")
    for hooks in (rs_hooks, user_hooks, seed_hooks):
        assert {"post-install", "post-upgrade"} <= set(hooks)
    assert rs_weight < user_weight < seed_weight


def test_ingress_routes_api_ws_and_root():
    text = gotemplate.read(TEMPLATES / "ingress.yaml")
    assert re.search(r"path: /api\n\s+pathType: Prefix\n(?:.*\n){2}\s+name: \{\{ \$api \}\}", text)
    assert re.search(r"path: /\n\s+pathType: Prefix\n(?:.*\n){2}\s+name: \{\{ \$api \}\}", text)
    assert re.search(r"path: /ws\n\s+pathType: Prefix\n(?:.*\n){2}\s+name: \{\{ \$ws \}\}", text)
    annotations = chart_values()["ingress"]["websocketAnnotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def test_http_roles_probe_healthz_and_readyz():
    probes = chart_values()["probes"]
    assert probes["liveness"]["path"] == "/healthz"
    assert probes["readiness"]["path"] == "/readyz"
    for name in ("api-deployment.yaml", "gateway-deployment.yaml"):
        text = gotemplate.read(TEMPLATES / name)
        assert "path: {{ .Values.probes.liveness.path }}" in text
        assert "path: {{ .Values.probes.readiness.path }}" in text


def test_redis_runs_with_aof_and_noeviction():
    text = gotemplate.read(TEMPLATES / "redis-statefulset.yaml")
    assert "--appendonly yes" in text
    assert "--maxmemory-policy noeviction" in text


def test_mongodb_runs_as_a_keyfile_authenticated_replica_set():
    text = gotemplate.read(TEMPLATES / "mongodb-statefulset.yaml")
    assert '- "--replSet"' in text
    assert '- "--keyFile"' in text
    assert "MONGO_INITDB_ROOT_PASSWORD" in text
    secret = gotemplate.read(TEMPLATES / "secret.yaml")
    assert "mongodb-keyfile:" in secret


def test_embedded_files_exist():
    for path in template_files():
        for name in re.findall(r'\.Files\.Get "([^"]+)"', gotemplate.read(path)):
            assert (CHART / name).is_file(), name
    assert list((CHART / "dashboards").glob("*.json"))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_mongo_scripts_are_valid_javascript():
    scripts = sorted((CHART / "files" / "mongo").glob("*.js"))
    assert len(scripts) == 2
    for script in scripts:
        result = subprocess.run(
            ["node", "--check", str(script)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr


def test_chart_metadata():
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "orderflow"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["kubeVersion"].startswith(f">={OLDEST_KUBERNETES}")
