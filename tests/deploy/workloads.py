"""The chart's rendered containers, as what a kubelet would run: one :class:`Workload` each.

Everything is read from the rendered objects, never from names known in advance:
the command and args, the environment with its ConfigMap and Secret references
resolved (Secret data base64-decoded, ``envFrom`` first and ``env`` over it, as
the kubelet does), the declared ports and probes, the merged pod and container
security context, and the writable volumes. A field this translation does not
know (a volume type, an ``exec`` probe, a ``fieldRef``) raises
:class:`UnsupportedSpec` instead of being dropped, so a new chart feature cannot
slip past the workload tests unseen.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.rendering import Manifest, pod_spec

RUNNABLE_KINDS = ("Deployment", "Job", "CronJob")


class UnsupportedSpec(ValueError):
    """The rendered spec uses something this translation does not reproduce."""


@dataclass(frozen=True)
class Probe:
    """An HTTP GET probe (``kind``: livenessProbe, readinessProbe or startupProbe) or, with
    ``path`` None, a TCP one, aimed at the container port numbered ``port``."""

    kind: str
    port: int
    path: str | None


@dataclass
class Workload:
    """One container of a Deployment, Job or CronJob, as rendered."""

    kind: str
    name: str
    container: str
    pod_labels: dict[str, str]
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    ports: dict[str, int]  # name (or the number, for an unnamed port) -> containerPort
    probes: list[Probe]
    run_as_user: int | None
    run_as_group: int | None
    run_as_non_root: bool
    read_only_root: bool
    dropped_capabilities: list[str]
    no_new_privileges: bool
    seccomp: str | None
    writable: dict[str, str | None] = field(default_factory=dict)  # emptyDir path -> sizeLimit

    @property
    def one_shot(self) -> bool:
        """Runs to completion (a Job, or a CronJob's job) rather than serving."""
        return self.kind in {"Job", "CronJob"}

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (container {self.container})"


def _data(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Secret":
        decoded = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        return {**decoded, **obj.get("stringData", {})}
    return {k: str(v) for k, v in obj.get("data", {}).items()}


def _sources(manifests: list[Manifest]) -> dict[tuple[str, str], dict[str, str]]:
    return {(m.kind, m.name): _data(m.obj) for m in manifests if m.kind in {"ConfigMap", "Secret"}}


def _lookup(sources: dict[tuple[str, str], dict[str, str]], kind: str, ref: dict[str, Any]) -> Any:
    data = sources.get((kind, ref["name"]))
    if data is None:
        if ref.get("optional"):
            return None
        raise KeyError(f"{kind} {ref['name']} is not among the rendered objects")
    if "key" not in ref:
        return data
    if ref["key"] not in data and not ref.get("optional"):
        raise KeyError(f"{kind} {ref['name']} has no key {ref['key']!r}")
    return data.get(ref["key"])


# Where envFrom and valueFrom point: the reference's field -> the object kind it names.
ENV_FROM = {"configMapRef": "ConfigMap", "secretRef": "Secret"}
VALUE_FROM = {"configMapKeyRef": "ConfigMap", "secretKeyRef": "Secret"}


def _referenced(
    sources: dict[tuple[str, str], dict[str, str]],
    reference: dict[str, Any],
    fields: dict[str, str],
    what: str,
) -> Any:
    for name, kind in fields.items():
        if name in reference:
            return _lookup(sources, kind, reference[name])
    raise UnsupportedSpec(f"{what}: {sorted(reference)}")


def resolve_env(
    container: dict[str, Any], sources: dict[tuple[str, str], dict[str, str]]
) -> dict[str, str]:
    """The container's environment: ``envFrom`` in order, then ``env`` over it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        data = _referenced(sources, source, ENV_FROM, f"envFrom {source}")
        env.update({source.get("prefix", "") + key: value for key, value in (data or {}).items()})
    for var in container.get("env", []):
        if "valueFrom" not in var:
            value = str(var.get("value", ""))
            if "$(" in value:
                raise UnsupportedSpec(f"env {var['name']}: $(VAR) expansion is not reproduced")
            env[var["name"]] = value
            continue
        value = _referenced(sources, var["valueFrom"], VALUE_FROM, f"env {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env


def _probes(container: dict[str, Any], ports: dict[str, int]) -> list[Probe]:
    probes = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = container.get(kind)
        if spec is None:
            continue
        if "httpGet" in spec and spec["httpGet"].get("scheme", "HTTP") == "HTTP":
            target, path = spec["httpGet"]["port"], spec["httpGet"].get("path", "/")
        elif "tcpSocket" in spec:
            target, path = spec["tcpSocket"]["port"], None
        else:
            raise UnsupportedSpec(f"{container['name']}: {kind} {sorted(spec)}")
        if isinstance(target, str) and target not in ports:
            raise KeyError(f"{container['name']}: {kind} names port {target!r}, not declared")
        probes.append(Probe(kind, ports[target] if isinstance(target, str) else target, path))
    return probes


def _writable(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str | None]:
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    writable: dict[str, str | None] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume or mount.get("readOnly") or mount.get("subPath"):
            raise UnsupportedSpec(f"{container['name']}: volume {volume} mounted as {mount}")
        writable[mount["mountPath"]] = (volume["emptyDir"] or {}).get("sizeLimit")
    return writable


def _workload(manifest: Manifest, container: dict[str, Any], sources: Any) -> Workload:
    pod = pod_spec(manifest.obj)
    pod_security = pod.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    ports = {
        str(port.get("name", port["containerPort"])): int(port["containerPort"])
        for port in container.get("ports", [])
    }
    template = manifest.obj["spec"]
    if manifest.kind == "CronJob":
        template = template["jobTemplate"]["spec"]
    return Workload(
        kind=manifest.kind,
        name=manifest.name,
        container=container["name"],
        pod_labels=dict(template["template"]["metadata"].get("labels", {})),
        command=container.get("command"),
        args=container.get("args"),
        env=resolve_env(container, sources),
        ports=ports,
        probes=_probes(container, ports),
        run_as_user=security.get("runAsUser"),
        run_as_group=security.get("runAsGroup"),
        run_as_non_root=bool(security.get("runAsNonRoot")),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        dropped_capabilities=list(security.get("capabilities", {}).get("drop", [])),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        seccomp=security.get("seccompProfile", {}).get("type"),
        writable=_writable(pod, container),
    )


def workloads(manifests: list[Manifest], image_prefix: str) -> list[Workload]:
    """Every container of the rendered Deployments, Jobs and CronJobs whose image starts
    with ``image_prefix`` (the chart's own image; the bundled databases' are not ours)."""
    sources = _sources(manifests)
    found: list[Workload] = []
    for manifest in manifests:
        if manifest.kind not in RUNNABLE_KINDS:
            continue
        pod = pod_spec(manifest.obj)
        ours = [c for c in pod["containers"] if c["image"].startswith(image_prefix)]
        if ours and pod.get("initContainers"):
            raise UnsupportedSpec(f"{manifest}: init containers are not run here")
        found.extend(_workload(manifest, container, sources) for container in ours)
    return found
