"""The translation the workload tests rely on, checked without starting anything.

`test_chart_workloads.py` runs the rendered containers; these tests prove that
its checks can fail: an ``ORDERFLOW_*`` variable no settings field declares is
reported (pydantic-settings would ignore it silently), a containerPort that
nothing sets fails the plan, an URL naming an unknown host is refused, and the
rendered security context reaches ``podman run`` as flags. The unread-variable
check also runs here over every value set, with the Dockerfile's ENV.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from orderflow.runtime.localserver import free_port
from tests.deploy.containers import run_flags
from tests.deploy.dockerfile import runtime_stage_config
from tests.deploy.paths import chart_values
from tests.deploy.rendering import NAMESPACE, render, rendered, value_set_names
from tests.deploy.wiring import (
    AddressBook,
    Launch,
    WiringError,
    plan,
    settings_read_by,
    unread_variables,
)
from tests.deploy.workloads import Workload, workloads

IMAGE = runtime_stage_config()


def _workloads(manifests: list[Any]) -> list[Workload]:
    return workloads(manifests, f"{chart_values()['image']['repository']}:")


def _launches(manifests: list[Any]) -> list[Launch]:
    return [plan(workload, IMAGE, free_port) for workload in _workloads(manifests)]


def _unread(launch: Launch) -> list[str]:
    return unread_variables({**IMAGE.env, **launch.env}, settings_read_by(launch))


@pytest.mark.parametrize("name", value_set_names())
def test_every_orderflow_variable_is_read_by_its_process(name):
    launches = _launches(rendered(name))
    assert launches
    assert {str(launch.workload): _unread(launch) for launch in launches if _unread(launch)} == {}


def test_a_variable_no_setting_declares_is_reported_for_every_workload():
    manifests = render({"config": {"extraEnv": {"ORDERFLOW_NOT_A_SETTING": "1"}}})
    launches = _launches(manifests)
    assert launches
    assert {_unread(launch) == ["ORDERFLOW_NOT_A_SETTING"] for launch in launches} == {True}


def test_a_container_port_nothing_sets_fails_the_plan():
    (worker, *_) = [
        w for w in _workloads(rendered("defaults")) if w.ports and w.kind == "Deployment"
    ]
    wrong = dataclasses.replace(worker, ports={name: n + 1 for name, n in worker.ports.items()})
    with pytest.raises(WiringError, match="set by no \\*_PORT variable"):
        plan(wrong, IMAGE, free_port)


def test_service_host_names_map_to_the_local_port_of_the_selected_workload():
    manifests = rendered("defaults")
    launches = _launches(manifests)
    book = AddressBook(NAMESPACE)
    book.add_services(manifests, launches)
    (api,) = [launch for launch in launches if launch.workload.name.endswith("-api")]
    for host in ("orderflow-api", f"orderflow-api.{NAMESPACE}.svc.cluster.local"):
        url = book.local_url(f"http://{host}:8000/readyz")
        assert url == f"http://127.0.0.1:{api.local_ports['http']}/readyz"
    with pytest.raises(WiringError, match="neither a rendered Service"):
        book.local_url("redis://cache.example.net:6379/0")


def test_the_security_context_becomes_podman_flags():
    launches = _launches(rendered("defaults"))
    (seed,) = [launch for launch in launches if launch.workload.kind == "Job"]
    flags = run_flags(seed, IMAGE)
    pairs = set(itertools.pairwise(flags))
    security = chart_values()["securityContext"]
    pod = chart_values()["podSecurityContext"]
    assert ("--user", f"{pod['runAsUser']}:{pod['runAsGroup']}") in pairs
    assert security["readOnlyRootFilesystem"] and "--read-only" in flags
    assert "--read-only-tmpfs=false" in flags  # no writable /tmp unless the chart mounts one
    assert {("--cap-drop", cap) for cap in security["capabilities"]["drop"]} <= pairs
    assert ("--security-opt", "no-new-privileges") in pairs
    assert ("--tmpfs", "/tmp:rw,exec,nosuid,nodev,notmpcopyup,mode=0777,size=256m") in pairs
    assert ("--network", "host") in pairs
