"""What the rendered Ingresses route, and where the operator's token goes.

A path matcher of Kubernetes' `Exact`/`Prefix` rules (element-wise prefixes, the
longest match wins) over the rendered Ingresses; what the browser UI and the
operator console load is read from their files, so a new path in the UI that the
chart does not route fails here.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.deploy.paths import ROOT
from tests.deploy.rendering import (
    DEFAULTS,
    RELEASE,
    Manifest,
    pod_spec,
    render,
    rendered,
    value_set,
)

NETPOL = "keda-monitoring"  # the ci value set with docs exposed (and NetworkPolicies on)

STATIC = ROOT / "web" / "orderflow" / "web" / "static"


OPS_SCRIPT = "ops.js"  # the operator console's: routed only with ingress.exposeOps


def _ui_paths(*, ops: bool = False) -> set[str]:
    """Every absolute path the browser UI's HTML and JS name (the page itself is `/`);
    with ``ops``, those of the operator console (its page is `/ops`) instead."""
    if ops:
        found, sources = {"/ops"}, [STATIC / "ops.html", STATIC / "js" / OPS_SCRIPT]
    else:
        scripts = [p for p in sorted((STATIC / "js").glob("*.js")) if p.name != OPS_SCRIPT]
        found, sources = {"/"}, [STATIC / "index.html", *scripts]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"""["'`(}](/(?:api|static|ws)/[^"'`$?)]*)""", text))
    return found


def _route(manifests: list[Manifest], path: str) -> str | None:
    """The Service the Ingresses send a request path to (longest match wins)."""
    best: tuple[int, int, str] | None = None
    for ingress in (m.obj for m in manifests if m.kind == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for entry in rule["http"]["paths"]:
                prefix, kind = entry["path"], entry["pathType"]
                if kind == "Exact":
                    hit = path == prefix
                else:
                    elements = [e for e in prefix.split("/") if e]
                    hit = [e for e in path.split("/") if e][: len(elements)] == elements
                if hit:
                    rank = (len(prefix), kind == "Exact", entry["backend"]["service"]["name"])
                    best = max(best, rank) if best else rank
    return best[2] if best else None


def test_the_ui_and_api_paths_are_routed_and_nothing_else_by_default():
    manifests = rendered(DEFAULTS)
    api, gateway = f"{RELEASE}-api", f"{RELEASE}-gateway"
    ui = _ui_paths()
    assert {"/api/v1/menu", "/api/v1/orders", "/static/app.css", "/static/js/app.js"} <= ui
    assert any(p.startswith("/ws/") for p in ui)
    wrong = {p: _route(manifests, p) for p in ui}
    wrong = {p: s for p, s in wrong.items() if s != (gateway if p.startswith("/ws/") else api)}
    assert wrong == {}
    assert _route(manifests, "/api/v1/orders/0a1b2c") == api
    hidden = ["/metrics", "/docs", "/docs/openapi.json", "/docs/swagger", "/healthz", "/readyz",
              "/anything-else", "/apidocs"]  # fmt: skip
    assert {p: _route(manifests, p) for p in hidden} == dict.fromkeys(hidden)


def test_the_operator_console_is_routed_only_when_asked():
    api = f"{RELEASE}-api"
    console = _ui_paths(ops=True)
    assert {"/ops", "/api/v1/ops/", "/static/js/ops.js", "/static/ops.css"} <= console
    hidden = [p for p in console if p.startswith(("/ops", "/api/v1/ops"))]
    default = rendered(DEFAULTS)
    assert {p: _route(default, p) for p in hidden} == dict.fromkeys(hidden)
    exposed = render({"ingress": {"exposeOps": True}, "operator": {"enabled": True}})
    assert {p: _route(exposed, p) for p in console} == dict.fromkeys(console, api)
    assert _route(exposed, "/api/v1/ops/dead-letters/1-0/replay") == api
    assert _route(exposed, "/opsx") is None


def test_the_operator_token_reaches_only_the_api_and_only_when_enabled():
    def token_env(manifests: list[Manifest]) -> dict[str, Any]:
        found = {}
        for m in manifests:
            if m.kind in ("Deployment", "Job", "CronJob"):
                for c in pod_spec(m.obj)["containers"]:
                    for e in c.get("env", []):
                        if e["name"] == "ORDERFLOW_OPERATOR_TOKEN":
                            found[m.name] = e["valueFrom"]["secretKeyRef"]
        return found

    assert token_env(rendered(DEFAULTS)) == {}
    secret = next(m.obj for m in rendered(DEFAULTS) if m.kind == "Secret")
    assert "operator-token" not in secret["data"]
    on = render({"operator": {"enabled": True, "token": "t" * 40}})
    refs = token_env(on)
    assert list(refs) == [f"{RELEASE}-api"]
    secret = next(m.obj for m in on if m.kind == "Secret")
    assert refs[f"{RELEASE}-api"]["name"] == secret["metadata"]["name"]
    assert base64.b64decode(secret["data"][refs[f"{RELEASE}-api"]["key"]]) == b"t" * 40
    generated = next(m.obj for m in render({"operator": {"enabled": True}}) if m.kind == "Secret")
    assert len(base64.b64decode(generated["data"]["operator-token"])) == 40


def test_docs_are_routed_only_when_asked_and_metrics_never():
    manifests = rendered(NETPOL)
    assert value_set(NETPOL)["ingress"]["exposeDocs"]
    api = f"{RELEASE}-api"
    for path in ("/docs", "/docs/openapi.json", "/docs/assets/swagger-ui.css", "/api/v1/menu", "/"):
        assert _route(manifests, path) == api, path
    assert _route(manifests, "/healthz") is None
    assert _route(manifests, "/metrics") is None  # on the admin port, which no Ingress routes
    default = rendered(DEFAULTS)
    assert _route(default, "/docs") is None and _route(default, "/metrics") is None


def test_the_docs_page_names_its_spec_under_docs():
    from orderflow.web.openapi import SPEC_PATH

    assert SPEC_PATH.startswith("/docs/")  # so the `/docs` prefix carries the spec too
