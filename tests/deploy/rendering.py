"""The chart linted and rendered by Helm itself, in process.

`helm-python-sdk` (imported as `helm_python`) wraps Helm v4's Go SDK as a shared
library, so `helm lint` and `helm template` run here without a `helm` binary:
the same template engine, Sprig functions, values coalescing and
`values.schema.json` validation (Go's regexp, not Python's) as an install.

A value set is the defaults plus one `ci/*-values.yaml` file (chart-testing's
convention); each is rendered once per test session.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import helm_python as helm
import yaml

from tests.deploy.paths import CHART, CI_VALUES, load_yaml

RELEASE = "orderflow"
NAMESPACE = "shop"
DEFAULTS = "defaults"

# Severities of helm.lint()'s messages (helm.sh/helm/v4/pkg/lint/support).
INFO, WARNING, ERROR = 1, 2, 3


@dataclass(frozen=True)
class Manifest:
    """One object Helm rendered, with the template it came from."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def type_key(self) -> tuple[str, str]:
        return str(self.obj["apiVersion"]), self.kind

    def __str__(self) -> str:
        return f"{self.template}: {self.kind} {self.name}"


def value_set_names() -> list[str]:
    return [DEFAULTS] + [
        path.name.removesuffix("-values.yaml") for path in sorted(CI_VALUES.glob("*-values.yaml"))
    ]


def value_set(name: str) -> dict[str, Any]:
    """The overrides of a value set, as `helm install -f` would read them."""
    if name == DEFAULTS:
        return {}
    loaded = load_yaml(CI_VALUES / f"{name}-values.yaml")
    assert isinstance(loaded, dict), name
    return loaded


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any]) -> list[Manifest]:
    """`helm template` of the chart with these overrides, as parsed objects.

    Raises helm.HelmValuesError when the values break the schema and
    helm.HelmRenderError when a template fails.
    """
    files = chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = []
    for template, text in sorted(files.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for document in yaml.safe_load_all(text):
            if document is not None:
                manifests.append(Manifest(template.removeprefix(f"{chart().name}/"), document))
    return manifests


@cache
def _rendered(name: str) -> tuple[Manifest, ...]:
    return tuple(render(value_set(name)))


def rendered(name: str) -> list[Manifest]:
    """The objects of one value set (rendered once, then shared by the tests)."""
    return list(_rendered(name))


def notes(values: dict[str, Any]) -> str:
    """The rendered NOTES.txt that `helm install` prints."""
    files = chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return files[f"{chart().name}/templates/NOTES.txt"]


def objects(name: str, kind: str) -> list[dict[str, Any]]:
    return [m.obj for m in rendered(name) if m.kind == kind]


def find(name: str, kind: str, object_name: str) -> dict[str, Any]:
    matches = [obj for obj in objects(name, kind) if obj["metadata"]["name"] == object_name]
    assert len(matches) == 1, f"{name}: {kind} {object_name}: {len(matches)} found"
    return matches[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod, Deployment, StatefulSet, Job or CronJob."""
    spec: dict[str, Any] = obj["spec"]
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]["spec"]
    return template


def lint(values: dict[str, Any], kube_version: str) -> list[dict[str, Any]]:
    """`helm lint --strict --kube-version` messages: [{"severity", "path", "error"}]."""
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=kube_version)
    messages: list[dict[str, Any]] = report["messages"]
    return messages
