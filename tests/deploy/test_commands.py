"""Every command the deployment files run is one the real `orderflow` CLI accepts.

The compose file and the chart start each role with an argument list; a
renamed subcommand or option would only show up as a crash-looping pod. Here
each list goes through `orderflow.agents.cli.build_parser()` (parsing only: nothing is
started), and each worker's `module:app` import path resolves to an App.
"""

from __future__ import annotations

import importlib
import json
import re

import pytest

from orderflow.agents.cli import build_parser
from tests.deploy.paths import COMPOSE, TEMPLATES, chart_values, load_yaml


def _compose_commands() -> list[list[str]]:
    services = load_yaml(COMPOSE)["services"]
    return [s["command"] for s in services.values() if s.get("image") == "orderflow:local"]


def _chart_commands() -> list[list[str]]:
    """Literal `args: [...]` lists of the templates, with their templated parts resolved
    the way the defaults resolve them (extraArgs are empty lists by default)."""
    commands = []
    for path in sorted(TEMPLATES.glob("*.yaml")):
        for match in re.finditer(r"args: (\[.*\])", path.read_text(encoding="utf-8")):
            text = re.sub(r"\{\{ range [^}]*\}\}.*?\{\{ end \}\}", "", match.group(1))
            text = re.sub(r"\{\{ \$w\.app \| quote \}\}", '"WORKER_APP"', text)
            ternary = re.compile(r'\{\{ ternary "(\w+)" "(\w+)" [^}]*\}\}')
            variants = [ternary.sub(r'"\1"', text), ternary.sub(r'"\2"', text)]
            for variant in dict.fromkeys(variants):  # both outcomes of a ternary
                assert "{{" not in variant, f"{path.name}: unresolved {variant}"
                args = json.loads(variant)
                if "WORKER_APP" in args:
                    for worker in chart_values()["workers"].values():
                        commands.append([worker["app"] if a == "WORKER_APP" else a for a in args])
                else:
                    commands.append(args)
    return commands


def test_chart_commands_were_found():
    commands = _chart_commands()
    assert ["api", "--role", "api"] in commands
    assert ["api", "--role", "all"] in commands  # gateway.enabled=false
    assert ["api", "--role", "gateway"] in commands
    assert ["seed"] in commands
    assert ["refill"] in commands
    assert ["worker", "orderflow.agents.simulator:app"] in commands


@pytest.mark.parametrize(
    "command", _compose_commands() + _chart_commands(), ids=lambda c: " ".join(c)
)
def test_the_cli_accepts_the_command(command):
    args = build_parser().parse_args(command)
    assert callable(args.func)


@pytest.mark.parametrize("app", sorted({w["app"] for w in chart_values()["workers"].values()}))
def test_worker_app_import_paths_resolve_to_apps(app):
    from orderflow.runtime import App

    module_name, attribute = app.split(":")
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, attribute), App)
