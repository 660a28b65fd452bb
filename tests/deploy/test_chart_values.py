"""The chart's values: schema, documentation, and agreement with the templates.

These are the checks Helm itself would make at install time (`values.schema.json`)
plus the ones a reviewer would: every value is documented, every value a
template reads exists, and no value is dead (documented but read by nothing).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tests.deploy import gotemplate
from tests.deploy.paths import CHART, chart_values, leaf_paths, lookup, template_files


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def errors(schema: dict[str, Any], values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        "/".join(map(str, e.absolute_path)) + ": " + e.message
        for e in validator.iter_errors(values)
    )


def test_schema_is_a_valid_draft7_schema(schema):
    jsonschema.Draft7Validator.check_schema(schema)


def test_default_values_satisfy_the_schema(schema):
    assert errors(schema, chart_values()) == []


def _with(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(values)
    node = changed
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("mongodb.enabled", False, "should be non-empty"),  # no store at all
        ("redis.enabled", False, "should be non-empty"),  # no Redis at all
        ("mongodb.externalUrl", "postgres://db/x", "does not match"),
        ("redis.externalUrl", "http://redis:6379", "does not match"),
        ("config.logFormat", "xml", "is not one of"),
        ("image.pullPolicy", "Sometimes", "is not one of"),
        ("api.replicas", "2", "is not of type"),
        ("api.autoscaling.targetCPUUtilizationPercentage", 150, "is greater than"),
        ("mongodb.replicas", 0, "is less than"),
        ("mongodb.auth.keyfile", "short", "does not match"),
        ("redis.appendfsync", "no", "is not one of"),
        ("refill.schedule", "every hour", "does not match"),
        ("api.resources", {"requests": {"cpu": "1"}, "limit": {}}, "Additional properties"),
        ("config.extraEnv", {"lower_case": "1"}, "does not match"),
        ("workers.orders.app", "orderflow.agents.orders", "does not match"),
        ("workers.extra", {"enabled": True}, "is a required property"),
        ("ingres", {}, "Additional properties"),  # a typo in a top-level key
    ],
)
def test_schema_rejects_bad_values(schema, path, value, complaint):
    found = errors(schema, _with(chart_values(), path, value))
    assert any(complaint in e for e in found), found


def test_external_servers_are_accepted_with_urls(schema):
    values = _with(chart_values(), "mongodb.enabled", False)
    values = _with(values, "mongodb.externalUrl", "mongodb+srv://u:p@cluster.example/orderflow")
    values = _with(values, "redis.enabled", False)
    values = _with(values, "redis.externalUrl", "rediss://:secret@cache.example:6380/0")
    assert errors(schema, values) == []


def test_an_extra_worker_role_is_accepted(schema):
    extra = copy.deepcopy(chart_values()["workers"]["orders"])
    extra["app"] = "mycompany.loyalty:app"
    assert errors(schema, _with(chart_values(), "workers.loyalty", extra)) == []


def test_every_leaf_value_is_listed_in_the_chart_readme():
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    missing = [
        ".".join(path) for path in leaf_paths(chart_values()) if f"`{'.'.join(path)}`" not in readme
    ]
    assert missing == []


def test_every_leaf_value_has_a_description_comment():
    """`# --` comments in values.yaml are the README's source; none may be missing."""
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented = set()
    stack: list[tuple[int, str]] = []
    pending = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith(("#", "- ")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, stripped.split(":", 1)[0].strip('"')))
        if pending:
            documented.add(tuple(key for _, key in stack))
            pending = False
    undocumented = [
        ".".join(path)
        for path in leaf_paths(chart_values())
        if not any(path[: i + 1] in documented for i in range(len(path)))
    ]
    assert undocumented == []


def _template_texts() -> dict[str, str]:
    return {path.name: gotemplate.read(path) for path in template_files()}


def test_every_values_path_a_template_reads_exists():
    values = chart_values()
    missing = sorted(
        f"{name}: .Values.{'.'.join(path)}"
        for name, text in _template_texts().items()
        for path in gotemplate.values_paths(text)
        if not lookup(values, path)[0]
    )
    assert missing == []


def test_every_field_read_from_a_ranged_value_exists_in_each_entry():
    """`range $role, $w := .Values.workers` then `$w.pdb.enabled`: every worker has it."""
    values = chart_values()
    checked = 0
    missing = []
    for name, text in _template_texts().items():
        for variable, source in gotemplate.range_bindings(text):
            found, entries = lookup(values, source)
            assert found and isinstance(entries, dict), source
            for field in gotemplate.variable_paths(text, variable):
                for key, entry in entries.items():
                    checked += 1
                    if not lookup(entry, field)[0]:
                        missing.append(f"{name}: {variable}.{'.'.join(field)} ({key})")
    assert checked > 0
    assert missing == []


def _used_paths() -> set[tuple[str, ...]]:
    values = chart_values()
    used: set[tuple[str, ...]] = set()
    for text in _template_texts().values():
        bindings = gotemplate.range_bindings(text)
        sources = {source for _, source in bindings}
        used |= {path for path in gotemplate.values_paths(text) if path not in sources}
        for variable, source in bindings:
            fields = gotemplate.variable_paths(text, variable)
            if not fields:  # entries rendered whole, e.g. `range $name, $value := ...extraEnv`
                used.add(source)
            for key in lookup(values, source)[1]:
                used |= {(*source, key, *field) for field in fields}
    return used


def test_no_value_is_dead():
    """Each leaf is read by a template itself or through a parent rendered whole (toYaml)."""
    used = _used_paths()
    dead = [
        ".".join(path)
        for path in leaf_paths(chart_values())
        if not any(path[:i] in used for i in range(1, len(path) + 1))
    ]
    assert dead == []


def test_readme_says_which_checks_run_offline_and_which_need_helm():
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert "helm lint" in readme
    assert re.search(r"helm template .*\| *kubeconform", readme)
    assert "tests/deploy" in readme
