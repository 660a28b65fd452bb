"""Helm's own lint and render of the chart, and every rendered object validated.

For the defaults and every `ci/*-values.yaml`:
- `helm lint --strict` (Helm's library, see rendering.py) at the oldest and the
  newest supported Kubernetes: no warning, no error;
- `helm template` renders, and every core object passes `kubernetes-validate`
  in strict mode (unknown fields are errors) against the schemas of both
  Kubernetes versions (paths.KUBERNETES_VERSIONS);
- every custom resource (KEDA, Prometheus Operator) has what its CRD requires
  (crds.py: kubernetes-validate has no CRD schemas).
"""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

from tests.deploy import rendering
from tests.deploy.crds import CRD_SCHEMAS, crd_errors
from tests.deploy.paths import CHART, CI_VALUES, KUBERNETES_VERSIONS, NEWEST_KUBERNETES
from tests.deploy.rendering import DEFAULTS, rendered, value_set, value_set_names

VALUE_SETS = value_set_names()


@pytest.fixture(scope="module", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate re-reads its schema files (megabytes of JSON) on every
    call; reading each once makes the validation of ~350 objects take a second
    instead of ten. The schemas themselves are unchanged."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kv_utils, "schema_contents", functools.cache(kv_utils.schema_contents))
        yield


def test_ci_value_sets_exist():
    assert {
        "external",
        "external-postgres",
        "keda-monitoring",
        "minimal",
        "postgres",
    } <= set(VALUE_SETS)
    assert all(path.name.endswith("-values.yaml") for path in CI_VALUES.iterdir())


def test_the_library_is_helm_4():
    assert helm.helm_sdk_version().startswith("v4.")


def _problems(messages: list[dict]) -> list[str]:
    return [f"{m['path']}: {m['error']}" for m in messages if m["severity"] >= rendering.WARNING]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(name, version):
    """Informational messages (Helm suggests an `icon`) are allowed; nothing more."""
    assert _problems(rendering.lint(value_set(name), f"v{version}")) == []


def test_helm_lint_reports_a_broken_template(tmp_path: Path):
    broken = tmp_path / "orderflow"
    shutil.copytree(CHART, broken)
    with (broken / "templates" / "configmap.yaml").open("a", encoding="utf-8") as handle:
        handle.write("  BROKEN: {{ .Values.config.logLevel | nindnet 2 }}\n")
    report = helm.lint(broken, strict=True)
    assert any("nindnet" in problem for problem in _problems(report["messages"]))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_renders_every_value_set(name):
    manifests = rendered(name)
    kinds = {m.kind for m in manifests}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job"} <= kinds
    names = [(m.kind, m.name) for m in manifests]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    for manifest in manifests:
        assert manifest.obj.get("apiVersion") and manifest.obj["metadata"].get("name"), manifest


def test_render_refuses_values_the_schema_refuses():
    with pytest.raises(helm.HelmValuesError, match="externalUrl"):
        rendering.render({"redis": {"enabled": False}})


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_core_objects_are_valid_kubernetes(name, version):
    invalid = []
    for manifest in rendered(name):
        if manifest.type_key in CRD_SCHEMAS:
            continue  # checked below against what their CRDs require
        try:
            kubernetes_validate.validate(manifest.obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            invalid.append(f"{manifest}: {manifest.obj['apiVersion']} is not in {version}")
        except kubernetes_validate.ValidationError as error:
            invalid.append(f"{manifest}: {error.message} at {list(error.path)}")
    assert invalid == []


def test_strict_validation_notices_an_unknown_field_and_a_removed_api():
    deployment = copy.deepcopy(rendering.objects(DEFAULTS, "Deployment")[0])
    kubernetes_validate.validate(deployment, NEWEST_KUBERNETES, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, NEWEST_KUBERNETES, strict=True)
    pdb = copy.deepcopy(rendering.objects(DEFAULTS, "PodDisruptionBudget")[0])
    pdb["apiVersion"] = "policy/v1beta1"  # removed in Kubernetes 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(pdb, NEWEST_KUBERNETES, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_custom_resources_have_what_their_crds_require(name):
    problems = [
        f"{manifest}: {problem}"
        for manifest in rendered(name)
        if manifest.type_key in CRD_SCHEMAS
        for problem in crd_errors(manifest.obj)
    ]
    assert problems == []


def test_every_custom_resource_kind_is_rendered_by_some_value_set():
    rendered_kinds = {m.type_key for name in VALUE_SETS for m in rendered(name)}
    assert set(CRD_SCHEMAS) <= rendered_kinds


def test_crd_check_notices_missing_and_mistyped_fields():
    scaled = copy.deepcopy(rendering.objects("keda-monitoring", "ScaledObject")[0])
    assert crd_errors(scaled) == []
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 100  # must be a string
    del scaled["spec"]["scaleTargetRef"]
    problems = crd_errors(scaled)
    assert any("scaleTargetRef" in p for p in problems)
    assert any("lagCount" in p for p in problems)
    monitor = copy.deepcopy(rendering.objects("keda-monitoring", "ServiceMonitor")[0])
    del monitor["spec"]["endpoints"]
    assert any("endpoints" in p for p in crd_errors(monitor))
