"""Every pod the chart renders is hardened as a cluster admin expects.

For every workload (Deployments, StatefulSets, Jobs, the CronJob, the hook Jobs,
the Helm test Pod) of every value set, on the rendered objects:

- the pod's securityContext: `runAsNonRoot: true`, a non-zero `runAsUser`,
  `runAsGroup` and `fsGroup`, `seccompProfile: RuntimeDefault`; no host
  namespaces, no hostPath volume;
- every container, init containers included: `allowPrivilegeEscalation: false`,
  `readOnlyRootFilesystem: true`, `capabilities.drop: [ALL]` and nothing added,
  not privileged, and (its own or the pod's) `runAsNonRoot: true`, a non-zero
  user and `seccompProfile: RuntimeDefault`;
- every container requests CPU and memory and has a memory limit (no CPU limit
  by default: it throttles a busy pod without protecting the node; the values
  accept one where a LimitRange demands it);
- with the root filesystem read-only, every path the container's program writes
  (WRITABLE, per container) is a writable mount of an emptyDir or a claim, and
  every mount names a volume of the pod.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.rendering import DEFAULTS, RELEASE, find, pod_spec, rendered, value_set_names

VALUE_SETS = value_set_names()
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")

# What each container's program writes, by container name. A new container
# must be added here, with its writable paths, before this test passes.
ORDERFLOW_WRITES = ("/tmp",)  # ORDERFLOW_DATA_DIR=/tmp/orderflow, Sanic's metrics files
WRITABLE: dict[str, tuple[str, ...]] = {
    "api": ORDERFLOW_WRITES,
    "gateway": ORDERFLOW_WRITES,
    "worker": ORDERFLOW_WRITES,
    "seed": ORDERFLOW_WRITES,
    "refill": ORDERFLOW_WRITES,
    "readyz": ORDERFLOW_WRITES,
    # mongod: data, its Unix socket and the entrypoint's temporary files in /tmp
    "mongodb": ("/data/db", "/tmp"),
    "keyfile": ("/keyfile",),  # copies the keyfile there with mode 0400
    # mongosh keeps its history under HOME=/tmp
    "init-replica-set": ("/tmp",),
    "create-user": ("/tmp",),
    "redis": ("/data",),
    # PGDATA below the claim; the socket and lock in /var/run/postgresql
    "postgresql": ("/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"),
}


def _workloads(name: str) -> list[dict[str, Any]]:
    return [m.obj for m in rendered(name) if m.kind in WORKLOADS]


def _label(workload: dict[str, Any]) -> str:
    return f"{workload['kind']} {workload['metadata']['name']}"


def _claims(workload: dict[str, Any]) -> set[str]:
    if workload["kind"] != "StatefulSet":
        return set()
    return {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}


def _pod_problems(spec: dict[str, Any]) -> list[str]:
    context = spec.get("securityContext", {})
    problems = []
    if context.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        if not context.get(field):  # missing, or 0 (root)
            problems.append(f"pod {field} is not a non-root id")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            problems.append(f"pod uses {host}")
    volumes = spec.get("volumes", [])
    problems += [f"volume {v['name']} is a hostPath" for v in volumes if "hostPath" in v]
    return problems


def _container_problems(container: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    context = container.get("securityContext", {})
    effective = {**pod.get("securityContext", {}), **context}
    problems = []
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if context.get("privileged"):
        problems.append("privileged")
    capabilities = context.get("capabilities", {})
    if capabilities.get("drop") != ["ALL"]:
        problems.append("capabilities.drop is not [ALL]")
    if capabilities.get("add"):
        problems.append(f"capabilities.add {capabilities['add']}")
    if effective.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if not effective.get("runAsUser"):
        problems.append("runAsUser is not a non-root id")
    if effective.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for kind, names in (("requests", ("cpu", "memory")), ("limits", ("cpu", "memory"))):
        problems += [f"no {kind}.{n}" for n in names if not resources.get(kind, {}).get(n)]
    return problems


def _mount_problems(container: dict[str, Any], workload: dict[str, Any]) -> list[str]:
    spec = pod_spec(workload)
    claims = _claims(workload)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    writable = set()
    problems = []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if not volume and mount["name"] not in claims:
            problems.append(f"mount {mount['mountPath']}: no volume {mount['name']}")
        elif not mount.get("readOnly") and (mount["name"] in claims or "emptyDir" in volume):
            writable.add(mount["mountPath"])
    if container["name"] not in WRITABLE:
        problems.append("not in WRITABLE: say which paths it writes")
    for path in WRITABLE.get(container["name"], ()):
        if path not in writable:
            problems.append(f"{path} is not a writable emptyDir or claim")
    return problems


def problems_of(workload: dict[str, Any]) -> list[str]:
    spec = pod_spec(workload)
    found = [f"{_label(workload)}: {p}" for p in _pod_problems(spec)]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        where = f"{_label(workload)} container {container['name']}"
        found += [f"{where}: {p}" for p in _container_problems(container, spec)]
        found += [f"{where}: {p}" for p in _mount_problems(container, workload)]
    return found


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_and_container_is_hardened(name):
    workloads = _workloads(name)
    assert workloads
    assert [p for w in workloads for p in problems_of(w)] == []


def test_every_kind_of_workload_is_checked():
    kinds = {w["kind"] for name in VALUE_SETS for w in _workloads(name)}
    assert kinds == set(WORKLOADS)
    containers = {
        c["name"]
        for name in VALUE_SETS
        for w in _workloads(name)
        for c in [*pod_spec(w).get("initContainers", []), *pod_spec(w)["containers"]]
    }
    assert containers == set(WRITABLE)  # no stale entry in WRITABLE either


def test_the_check_notices_what_is_missing():
    mongodb = find(DEFAULTS, "StatefulSet", f"{RELEASE}-mongodb")
    assert problems_of(mongodb) == []
    broken = copy.deepcopy(mongodb)
    spec = pod_spec(broken)
    del spec["securityContext"]["seccompProfile"]
    spec["securityContext"]["runAsUser"] = 0
    keyfile = spec["initContainers"][0]
    del keyfile["securityContext"]["readOnlyRootFilesystem"]
    keyfile["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    del keyfile["resources"]["limits"]
    mongod = spec["containers"][0]
    mongod["volumeMounts"] = [m for m in mongod["volumeMounts"] if m["mountPath"] != "/tmp"]
    mongod["securityContext"]["allowPrivilegeEscalation"] = True
    text = "\n".join(problems_of(broken))
    for expected in (
        "pod seccompProfile is not RuntimeDefault",
        "pod runAsUser is not a non-root id",
        "container keyfile: readOnlyRootFilesystem is not true",
        "container keyfile: capabilities.drop is not [ALL]",
        "container keyfile: no limits.memory",
        "container mongodb: /tmp is not a writable emptyDir or claim",
        "container mongodb: allowPrivilegeEscalation is not false",
        "container mongodb: runAsUser is not a non-root id",
    ):
        assert expected in text
