"""From rendered workloads to what runs on one host: local ports, addresses, settings.

On the host network every container shares 127.0.0.1, so two containers that
declare the same port (the API and the gateway both 8000, every worker its
admin/metrics port) cannot both have it. Each declared containerPort is therefore
moved to a free local port by rewriting, consistently, whatever sets it: every
``*_PORT`` environment variable (the image's or the chart's) whose value is that
number, and every ``--...port N`` / ``--...port=N`` argument. A containerPort
that nothing sets cannot be moved and fails the plan: nothing would show that the
process listens there. The probes are then aimed at the moved ports, so a probe
answering proves the port, the variable and the process agree.

Host names are mapped the same way: the chart's Services (every DNS form of
their names, with their ports, resolved to the local port of the workload they
select) and the test's stand-in external servers; an URL in the environment that
names any other host fails the plan rather than reaching out of the machine.

:func:`unread_variables` is the check pydantic-settings does not do: an
``ORDERFLOW_*`` variable that is no field of the settings class the process
reads is ignored silently, so a chart value feeding it configures nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings

from orderflow.agents.cli import build_parser
from orderflow.agents.settings import Settings
from orderflow.runtime.commands import worker as worker_command
from orderflow.runtime.settings import RuntimeSettings
from orderflow.runtime.worker import load_app
from tests.deploy.dockerfile import ImageConfig
from tests.deploy.rendering import Manifest
from tests.deploy.workloads import Probe, UnsupportedSpec, Workload

LOOPBACK = "127.0.0.1"
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}
DEFAULT_PORTS |= {"http": 80, "https": 443, "ws": 80, "mongodb": 27017}


class WiringError(AssertionError):
    """The rendered objects do not fit together on a host (a port, a host, a variable)."""


@dataclass
class Launch:
    """One workload as it is started here: the argument list after the entrypoint, the
    environment to set on top of the image's, and where its ports ended up."""

    workload: Workload
    entrypoint: list[str]  # the image's, or the spec's `command`
    arguments: list[str]
    env: dict[str, str]
    local_ports: dict[str, int]  # port name -> local port
    moved: list[str]  # what was rewritten to move the ports, for the log

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.arguments]

    def local(self, container_port: int) -> int:
        for name, number in self.workload.ports.items():
            if number == container_port:
                return self.local_ports[name]
        raise WiringError(f"{self.workload}: probe on port {container_port}, which is not declared")

    def probe_targets(self) -> list[tuple[Probe, int]]:
        return [(probe, self.local(probe.port)) for probe in self.workload.probes]


def _command_line(workload: Workload, image: ImageConfig) -> tuple[list[str], list[str]]:
    """(entrypoint, arguments) as the kubelet combines them with the image's."""
    if workload.command is not None:
        return list(workload.command), list(workload.args or [])
    arguments = workload.args if workload.args is not None else image.cmd
    return list(image.entrypoint), list(arguments)


def _move_port(
    workload: Workload, env: dict[str, str], arguments: list[str], number: int, local: int
) -> list[str]:
    moved = []
    for name, value in env.items():
        if name.endswith("_PORT") and value == str(number):
            env[name] = str(local)
            moved.append(f"{name}={local}")
    for index, argument in enumerate(arguments):
        option, equals, value = argument.partition("=")
        if equals and "port" in option and option.startswith("--") and value == str(number):
            arguments[index] = f"{option}={local}"
            moved.append(arguments[index])
        elif index and argument == str(number) and re.match(r"--\S*port", arguments[index - 1]):
            arguments[index] = str(local)
            moved.append(f"{arguments[index - 1]} {local}")
    if not moved:
        raise WiringError(
            f"{workload}: containerPort {number} is set by no *_PORT variable and no --*port "
            "argument, so nothing shows the process listens there (and it cannot be moved)"
        )
    return moved


def plan(workload: Workload, image: ImageConfig, free_port: Callable[[], int]) -> Launch:
    """Move every declared port of ``workload`` to a free local one (see the module)."""
    entrypoint, arguments = _command_line(workload, image)
    env = {**image.env, **workload.env}
    local_ports, moved = {}, []
    for name, number in workload.ports.items():
        local_ports[name] = free_port()
        moved += _move_port(workload, env, arguments, number, local_ports[name])
    overrides = {k: v for k, v in env.items() if workload.env.get(k, image.env.get(k)) != v}
    return Launch(
        workload, entrypoint, arguments, {**workload.env, **overrides}, local_ports, moved
    )


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


class AddressBook:
    """(host, port) as the pods name them -> the local port that answers instead."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.entries: dict[tuple[str, int], int] = {}

    def add(self, host: str, port: int, local_port: int) -> None:
        self.entries[(host.lower(), port)] = local_port

    def add_services(self, manifests: list[Manifest], launches: list[Launch]) -> None:
        """Every Service selecting a started workload, under each name a pod may use."""
        for service in (m.obj for m in manifests if m.kind == "Service"):
            name = service["metadata"]["name"]
            names = [name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc"]
            names.append(f"{name}.{self.namespace}.svc.cluster.local")
            selected = [
                launch
                for launch in launches
                if _selects(service["spec"].get("selector", {}), launch.workload.pod_labels)
            ]
            for port in service["spec"]["ports"]:
                for launch in selected[:1]:  # replicas of one workload: any of them answers
                    target = port.get("targetPort", port["port"])
                    local = (
                        launch.local(target)
                        if isinstance(target, int)
                        else launch.local_ports[target]
                    )
                    for host in names:
                        self.add(host, int(port["port"]), local)

    def local_url(self, url: str) -> str:
        """``url`` with its host and port replaced by 127.0.0.1 and the local port."""
        parts = urlsplit(url)
        if not parts.hostname or "," in parts.netloc:
            raise UnsupportedSpec(f"{url!r}: one host per URL is all that is mapped here")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        local = self.entries.get((parts.hostname.lower(), port or 0))
        if local is None:
            raise WiringError(
                f"{parts.hostname}:{port} is neither a rendered Service nor a test server"
            )
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{LOOPBACK}:{local}"))

    def map_env(self, launch: Launch) -> None:
        """Point every URL in the launch's environment at its local stand-in."""
        for name, value in list(launch.env.items()):
            if "://" in value:
                try:
                    launch.env[name] = self.local_url(value)
                except WiringError as exc:
                    raise WiringError(f"{launch.workload}: {name}: {exc}") from None


def ingress_backend(manifests: list[Manifest], path: str) -> tuple[str, int | str]:
    """(Service, port) an Ingress sends ``path`` to: longest matching rule, as ingress-nginx."""
    best: tuple[int, str, int | str] | None = None
    for ingress in (m.obj for m in manifests if m.kind == "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for route in rule["http"]["paths"]:
                prefix, exact = route["path"], route.get("pathType") == "Exact"
                matches = (
                    path == prefix if exact else (path + "/").startswith(prefix.rstrip("/") + "/")
                )
                if matches and (best is None or len(prefix) > best[0]):
                    backend = route["backend"]["service"]
                    port = backend["port"].get("number", backend["port"].get("name"))
                    best = (len(prefix), backend["name"], port)
    if best is None:
        raise WiringError(f"no Ingress rule routes {path}")
    return best[1], best[2]


def unread_variables(env: Mapping[str, str], settings: type[BaseSettings]) -> list[str]:
    """Names in ``env`` with the settings' prefix that are no field of ``settings``."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    fields = {name.lower() for name in settings.model_fields}
    return sorted(
        name
        for name in env
        if name.upper().startswith(prefix.upper()) and name[len(prefix) :].lower() not in fields
    )


def settings_read_by(launch: Launch) -> type[BaseSettings]:
    """The settings class the launched ``orderflow`` command reads its environment into.

    A worker reads the settings its App was built with (``App(settings=...)``); the
    application's own commands (api, seed, refill) read ``orderflow.agents.settings``;
    the runtime's operator commands read the runtime's. Anything else is not ours.
    """
    if not launch.entrypoint or launch.entrypoint[0].rsplit("/", 1)[-1] != "orderflow":
        raise UnsupportedSpec(f"{launch.workload}: {launch.argv} is not an orderflow command")
    args = build_parser().parse_args([*launch.entrypoint[1:], *launch.arguments])
    if args.func is worker_command.run:
        return type(load_app(args.apps[0]).settings)
    module = str(args.func.__module__)
    if module.startswith("orderflow.agents.commands."):
        return Settings
    if module.startswith("orderflow.runtime.commands."):
        return RuntimeSettings
    raise UnsupportedSpec(f"{launch.workload}: which settings does {module} read?")
