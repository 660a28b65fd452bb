"""Every command the deployment files run is one the real `orderflow` CLI accepts.

The compose file and the chart start each role with an argument list; a
renamed subcommand or option would only show up as a crash-looping pod. Here
each list goes through `orderflow.agents.cli.build_parser()` (parsing only: nothing is
started), and each worker's `module:app` import path resolves to an App.
"""

from __future__ import annotations

import importlib
import json

import pytest

from orderflow.agents.cli import build_parser
from tests.deploy.paths import COMPOSE, chart_values, load_yaml
from tests.deploy.rendering import pod_spec, rendered, value_set_names


def _compose_commands() -> list[list[str]]:
    services = load_yaml(COMPOSE)["services"]
    return [s["command"] for s in services.values() if s.get("image") == "orderflow:local"]


def _chart_commands() -> list[list[str]]:
    """The argument lists of every orderflow container Helm rendered, in every value set."""
    image = f"{chart_values()['image']['repository']}:"
    commands = []
    for name in value_set_names():
        for manifest in rendered(name):
            if manifest.kind not in {"Deployment", "Job", "CronJob"}:
                continue
            for container in pod_spec(manifest.obj)["containers"]:
                if container["image"].startswith(image) and container.get("args"):
                    commands.append(container["args"])
    return list({json.dumps(c): c for c in commands}.values())


def test_chart_commands_were_found():
    commands = _chart_commands()
    assert ["api", "--role", "api"] in commands
    assert ["api", "--role", "all"] in commands  # ci/no-gateway-values.yaml
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
