"""The chart's values: what its schema refuses, their documentation, and their use.

Helm itself applies values.schema.json (with Go's regexp) whenever it renders;
these tests feed it bad values through the same library, so that the schema is
known to refuse them. What Helm does not check at all is checked statically:
every value is documented alike in values.yaml, values.schema.json and the
README, every `.Values` path a template reads exists (a missing one renders as
empty, silently), and no value is dead.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest

from tests.deploy import gotemplate
from tests.deploy.paths import CHART, chart_values, leaf_paths, lookup, template_files
from tests.deploy.rendering import RELEASE, render


def _nested(path: str, value: Any) -> dict[str, Any]:
    """`--set path=value` as an overrides dict."""
    keys = path.split(".")
    overrides: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        overrides = {key: overrides}
    return overrides


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("mongodb.enabled", False, "minLength: got 0"),  # no store at all
        ("redis.enabled", False, "minLength: got 0"),  # no Redis at all
        ("mongodb.externalUrl", "postgres://db/x", "does not match pattern"),
        ("store.kind", "mysql", "value must be one of"),
        ("postgresql.externalUrl", "mongodb://db/x", "does not match pattern"),
        ("postgresql.database", "order-flow", "does not match pattern"),
        ("redis.externalUrl", "http://redis:6379", "does not match pattern"),
        ("config.logFormat", "xml", "value must be one of"),
        ("image.pullPolicy", "Sometimes", "value must be one of"),
        ("api.replicas", "2", "got string, want integer"),
        ("api.autoscaling.targetCPUUtilizationPercentage", 150, "maximum: got 150"),
        ("mongodb.replicas", 0, "minimum: got 0"),
        ("mongodb.auth.keyfile", "short", "does not match pattern"),
        ("mongodb.auth.keyfile", "k" * 1025, "maxLength: got 1,025, want 1,024"),
        ("redis.appendfsync", "no", "value must be one of"),
        ("refill.schedule", "every hour", "does not match pattern"),
        ("api.resources", {"limit": {}}, "additional properties 'limit' not allowed"),
        ("config.extraEnv", {"lower_case": "1"}, "invalid propertyName"),
        ("workers.orders.app", "orderflow.agents.orders", "does not match pattern"),
        ("workers.extra", {"enabled": True}, "missing properties"),
        ("ingres", {}, "additional properties 'ingres' not allowed"),  # a typo
    ],
)
def test_helm_refuses_bad_values(path, value, complaint):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(_nested(path, value))
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"store": {"kind": "postgresql"}, "postgresql": {"enabled": False}}, "minLength: got 0"),
        (
            {
                "store": {"kind": "postgresql"},
                "postgresql": {"enabled": False, "externalUrl": "mysql://db/x"},
            },
            "does not match pattern",
        ),
    ],
)
def test_helm_refuses_postgresql_without_a_server(overrides, complaint):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(overrides)
    assert complaint in str(refused.value)


def test_the_store_not_chosen_needs_no_url():
    """`mongodb.enabled: false` without a URL is fine when PostgreSQL is the store."""
    overrides = {"store": {"kind": "postgresql"}, "mongodb": {"enabled": False}}
    kinds = {(m.kind, m.name) for m in render(overrides)}
    assert ("StatefulSet", f"{RELEASE}-postgresql") in kinds


def test_helm_accepts_the_longest_keyfile():
    secret = next(
        m.obj for m in render(_nested("mongodb.auth.keyfile", "k" * 1024)) if m.kind == "Secret"
    )
    assert secret["data"]["mongodb-keyfile"]


def test_an_extra_worker_role_is_accepted_and_deployed():
    extra = copy.deepcopy(chart_values()["workers"]["orders"])
    extra["app"] = "mycompany.loyalty:app"
    manifests = render(_nested("workers.loyalty", extra))
    names = {(m.kind, m.name) for m in manifests}
    assert ("Deployment", f"{RELEASE}-loyalty-worker") in names


def test_every_leaf_value_is_listed_in_the_chart_readme():
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    missing = [
        ".".join(path) for path in leaf_paths(chart_values()) if f"`{'.'.join(path)}`" not in readme
    ]
    assert missing == []


def _description_comments() -> dict[tuple[str, ...], str]:
    """The `# --` comment of each key of values.yaml that has one (the README's source)."""
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    pending: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = stripped.removeprefix("# --").strip()
            continue
        if not stripped or stripped.startswith(("#", "- ")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, stripped.split(":", 1)[0].strip('"')))
        if pending is not None:
            documented[tuple(key for _, key in stack)] = pending
            pending = None
    return documented


def test_every_leaf_value_has_a_description_comment():
    documented = _description_comments()
    undocumented = [
        ".".join(path)
        for path in leaf_paths(chart_values())
        if not any(path[: i + 1] in documented for i in range(len(path)))
    ]
    assert undocumented == []


def _schema() -> dict[str, Any]:
    loaded = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _schema_node(schema: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """(schema of a values path, whether it is an entry of a free-form map such as workers)."""
    node, in_map = schema, False
    for key in path:
        if key in node.get("properties", {}):
            node = node["properties"][key]
        else:
            node, in_map = node["additionalProperties"], True
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node, in_map


def test_schema_describes_every_value_as_values_yaml_does():
    """The `# --` text of values.yaml is the schema's description (tools show either);
    entries of maps like `workers.<role>` share one schema definition, which must
    describe each of their documented keys."""
    schema = _schema()
    different = []
    for path, text in _description_comments().items():
        node, in_map = _schema_node(schema, path)
        if not node.get("description") or (not in_map and node["description"] != text):
            different.append(f"{'.'.join(path)}: {node.get('description')!r} != {text!r}")
    assert different == []


def test_every_schema_property_has_a_default_in_values_yaml():
    def properties(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for key, child in node.get("properties", {}).items():
            yield (*prefix, key)
            yield from properties(child, (*prefix, key))

    values = chart_values()
    helm_global = ("global",)  # Helm's own: a parent chart's globals, never in values.yaml
    missing = [
        ".".join(path)
        for path in properties(_schema())
        if path != helm_global and not lookup(values, path)[0]
    ]
    assert missing == []


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


def test_readme_says_what_make_test_proves_and_what_it_does_not():
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert "tests/deploy" in readme
    assert "helm-python-sdk" in readme
    assert re.search(r"ci/\*-values\.yaml", readme)
    assert "kubernetes-validate" in readme
