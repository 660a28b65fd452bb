"""Grafana dashboards: valid JSON, the panels the operators need, real metric names.

Every metric a panel queries must be one the code registers: the test imports
the runtime's and the web layer's metric modules and reads the names from
prometheus_client's registry, so a renamed metric breaks this test instead of
silently emptying a panel.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.deploy import paths

DASHBOARDS = sorted(paths.DASHBOARDS.glob("*.json"))
METRIC = re.compile(r"\borderflow_[a-z_]+\b")


def load(path) -> dict[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [t["expr"] for d in DASHBOARDS for p in panels(load(d)) for t in p["targets"]]


def registered_metric_names() -> set[str]:
    importlib_names = ("orderflow.runtime.metrics", "orderflow.web.metrics")
    for name in importlib_names:
        __import__(name)
    names = set(REGISTRY._names_to_collectors)  # includes _total/_bucket/... sample names
    return {n for n in names if n.startswith("orderflow_")}


def test_dashboards_exist_and_have_unique_uids():
    assert len(DASHBOARDS) >= 2
    uids = [load(d)["uid"] for d in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path):
    dashboard = load(path)
    assert dashboard["title"].startswith("orderflow")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), target["expr"]
            assert target["expr"].count("(") == target["expr"].count(")")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables


def test_the_required_views_are_there():
    titles = " | ".join(p["title"].lower() for d in DASHBOARDS for p in panels(load(d)))
    for view in (
        "events processed",
        "consumer lag",
        "pending entries",
        "dead letters",
        "latency p50 / p95 / p99",
        "errors",
        "orders placed vs rejected",
    ):
        assert view in titles, view


def test_every_queried_metric_is_registered_by_the_code():
    registered = registered_metric_names()
    used = {m for expr in expressions() for m in METRIC.findall(expr)}
    assert used
    assert sorted(used - registered) == []


def _labels_used(expr: str) -> set[str]:
    """Label names in `by (...)` clauses and `{label=...}` selectors (`le` is the bucket)."""
    labels: set[str] = set()
    for clause in re.findall(r"\bby \(([^)]*)\)", expr):
        labels |= {name.strip() for name in clause.split(",") if name.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
    return labels - {"le"}


def test_every_label_queried_exists_on_the_metric():
    registered_metric_names()  # imports the metric modules
    collectors = REGISTRY._names_to_collectors
    wrong = []
    for expr in expressions():
        known: set[str] = set()
        for metric in METRIC.findall(expr):
            known |= set(getattr(collectors[metric], "_labelnames", ()))
        unknown = _labels_used(expr) - known
        if unknown:
            wrong.append(f"{sorted(unknown)} in {expr}")
    assert wrong == []


def test_there_is_one_copy_of_each_dashboard():
    """The chart's folder is the only one; compose mounts it (see test_compose)."""
    elsewhere = [
        path
        for path in paths.DEPLOY.rglob("*.json")
        if path.parent != paths.DASHBOARDS and load(path).get("panels") is not None
    ]
    assert elsewhere == []
