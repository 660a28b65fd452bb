"""Where the deployment files live, and small loaders shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "orderflow"
TEMPLATES = CHART / "templates"
# Value sets rendered in CI besides the defaults (chart-testing's `ci/*-values.yaml`).
CI_VALUES = CHART / "ci"
COMPOSE = DEPLOY / "compose.yaml"
# The one copy of the Grafana dashboards: Helm reads only files inside the chart,
# and deploy/compose.yaml mounts this folder.
DASHBOARDS = CHART / "dashboards"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Every rendered object is validated against the schemas of the oldest Kubernetes
# the chart supports (Chart.yaml kubeVersion) and of the newest one the pinned
# kubernetes-validate (>= 1.37, see pyproject.toml) ships schemas for.
OLDEST_KUBERNETES = "1.25.0"
NEWEST_KUBERNETES = "1.37.0"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, NEWEST_KUBERNETES)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def chart_values() -> dict[str, Any]:
    values = load_yaml(CHART / "values.yaml")
    assert isinstance(values, dict)
    return values


def template_files() -> list[Path]:
    """Every file Helm renders (YAML templates, helpers, NOTES.txt, chart tests)."""
    files = sorted(TEMPLATES.rglob("*.yaml")) + sorted(TEMPLATES.rglob("*.tpl"))
    return [*files, TEMPLATES / "NOTES.txt"]


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Dotted paths of every leaf: scalars, lists and empty maps."""
    if isinstance(node, dict) and node:
        paths: list[tuple[str, ...]] = []
        for key, value in node.items():
            paths.extend(leaf_paths(value, (*prefix, str(key))))
        return paths
    return [prefix]


def lookup(node: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(found, value) of a path in nested maps."""
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node
