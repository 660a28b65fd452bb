"""yamllint over every YAML file that is not a Helm template."""

from __future__ import annotations

import pytest
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.paths import CHART, CI_VALUES, COMPOSE, DEPLOY, GRAFANA_PROVISIONING

CONFIG = YamlLintConfig(
    """
extends: default
rules:
  line-length: {max: 200}
  document-start: disable
  truthy: {check-keys: false}
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: 2, indent-sequences: consistent}
"""
)

FILES = [
    COMPOSE,
    CHART / "Chart.yaml",
    CHART / "values.yaml",
    *sorted(CI_VALUES.glob("*.yaml")),
    DEPLOY / "prometheus" / "prometheus.yml",
    *sorted(GRAFANA_PROVISIONING.rglob("*.yaml")),
]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_is_lint_clean(path):
    problems = [
        f"{path.name}:{p.line}:{p.column} {p.rule} {p.desc}"
        for p in linter.run(path.read_text(encoding="utf-8"), CONFIG, str(path))
    ]
    assert problems == []


def test_linter_reports_problems():
    assert list(linter.run("a: 1\na: 2\n", CONFIG))  # duplicate key
