"""Run the planned workloads, as containers or as plain processes, and talk to them.

Both ways share everything but the argument list: a :class:`ContainerRunner`
wraps each launch in ``podman run`` with the rendered security context; a
:class:`ProcessRunner` starts the installed ``orderflow`` command with the image's
environment (read from the Dockerfile) plus the same resolved one, for machines
where containers cannot run. Serving workloads run in an
:class:`~orderflow.agents.processes.ProcessTree` (``podman run`` stays in the
foreground and passes SIGTERM on to the container), ready once every declared
port accepts connections and every probe answers 200; Jobs run to completion.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from orderflow.agents.processes import ProcessSpec, ProcessTree
from orderflow.agents.readiness import ChildOutput, HttpOk, Readiness
from tests.deploy import containers
from tests.deploy.dockerfile import ImageConfig
from tests.deploy.rendering import Manifest
from tests.deploy.wiring import LOOPBACK, AddressBook, Launch, ingress_backend

log = logging.getLogger("tests.deploy.chart_stack")

JOB_TIMEOUT = 120.0
STOP_GRACE = 30.0  # the chart's terminationGracePeriodSeconds


class PortOpen(Readiness):
    """Something accepts TCP connections on 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.last = "no connection yet"

    def check(self, child: ChildOutput) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                return True
        except OSError as exc:
            self.last = repr(exc)
            return False

    def __str__(self) -> str:
        return f"port {self.port} accepting connections (last: {self.last})"


class AllOf(Readiness):
    """Every check passes (each is asked until it has passed once)."""

    def __init__(self, checks: Sequence[Readiness]) -> None:
        self.waiting = list(checks)

    def check(self, child: ChildOutput) -> bool:
        self.waiting = [c for c in self.waiting if not c.check(child)]
        return not self.waiting

    def __str__(self) -> str:
        return "; ".join(str(c) for c in self.waiting) or "all passed"


def readiness(launch: Launch) -> AllOf:
    """Each declared port listened on, each probe answering 200, on the moved ports."""
    checks: list[Readiness] = [PortOpen(port) for port in launch.local_ports.values()]
    for probe, port in launch.probe_targets():
        if probe.path is not None:
            checks.append(HttpOk(f"http://{LOOPBACK}:{port}{probe.path}", timeout=3.0))
    return AllOf(checks)


class Runner(Protocol):
    def argv(self, launch: Launch) -> list[str]: ...

    def env(self, launch: Launch) -> dict[str, str] | None: ...

    def cwd(self, launch: Launch) -> Path | None: ...

    def cleanup(self, launch: Launch) -> None: ...


class ContainerRunner:
    """Each launch as ``podman run`` of the built image, named after its workload."""

    def __init__(self, image_tag: str, image: ImageConfig, prefix: str) -> None:
        self.image_tag, self.image, self.prefix = image_tag, image, prefix

    def name(self, launch: Launch) -> str:
        return f"{self.prefix}-{launch.workload.name}-{launch.workload.container}"

    def argv(self, launch: Launch) -> list[str]:
        return containers.run_argv(self.name(launch), launch, self.image_tag, self.image)

    def env(self, launch: Launch) -> dict[str, str] | None:
        return None

    def cwd(self, launch: Launch) -> Path | None:
        return None

    def cleanup(self, launch: Launch) -> None:
        containers.remove(self.name(launch))


class ProcessRunner:
    """Each launch as the installed command with the image's environment, no container:
    the user, read-only root, dropped capabilities and tmpfs volumes are not applied."""

    def __init__(self, image: ImageConfig, bin_dir: Path, workdir: Path) -> None:
        self.image, self.bin_dir, self.workdir = image, bin_dir, workdir

    def argv(self, launch: Launch) -> list[str]:
        program = self.bin_dir / launch.entrypoint[0]
        assert program.exists(), f"{launch.workload}: {program} is not installed"
        return [str(program), *launch.entrypoint[1:], *launch.arguments]

    def env(self, launch: Launch) -> dict[str, str] | None:
        base = {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}
        return {**base, "HOME": str(self.workdir), **self.image.env, **launch.env}

    def cwd(self, launch: Launch) -> Path | None:
        return self.workdir

    def cleanup(self, launch: Launch) -> None:
        return None  # the process tree has stopped it


class ChartStack:
    """The planned launches of one rendered release, started through ``runner``."""

    def __init__(
        self,
        manifests: list[Manifest],
        launches: list[Launch],
        book: AddressBook,
        runner: Runner,
        logs: Path,
    ) -> None:
        self.manifests, self.launches, self.book = manifests, launches, book
        self.runner, self.logs = runner, logs
        self.tree = ProcessTree(grace=STOP_GRACE)

    def launch(self, kind: str, name_suffix: str = "") -> list[Launch]:
        return [
            launch
            for launch in self.launches
            if launch.workload.kind == kind and launch.workload.name.endswith(name_suffix)
        ]

    def run_job(self, launch: Launch) -> subprocess.CompletedProcess[str]:
        """Run a Job's (or CronJob's) container to completion; its output and exit code."""
        started = time.monotonic()
        try:
            done = subprocess.run(
                self.runner.argv(launch),
                env=self.runner.env(launch),
                cwd=self.runner.cwd(launch),
                capture_output=True,
                text=True,
                timeout=JOB_TIMEOUT,
                check=False,
            )
        finally:
            self.runner.cleanup(launch)
        log.info(
            "%s exited %d in %.1fs", launch.workload, done.returncode, time.monotonic() - started
        )
        return done

    def start_serving(self, timeout: float) -> float:
        """Start every Deployment's container; seconds until all were ready."""
        started = time.monotonic()
        for launch in self.launch("Deployment"):
            spec = ProcessSpec(
                launch.workload.name,
                self.runner.argv(launch),
                env=self.runner.env(launch),
                cwd=self.runner.cwd(launch),
                log_path=self.logs / f"{launch.workload.name}.log",
                ready=readiness(launch),
            )
            log.info("starting %s (%s)", launch.workload, ", ".join(launch.moved) or "no port")
            self.tree.add(spec)
        self.tree.start_ready(timeout)
        return time.monotonic() - started

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every serving container, as a pod's termination does; their exit codes."""
        try:
            return self.tree.stop()
        finally:
            for launch in self.launch("Deployment"):
                self.runner.cleanup(launch)

    def base_url(self, path: str, scheme: str = "http") -> str:
        """Where the Ingress would send ``path``: the local port of its backend Service."""
        service, port = ingress_backend(self.manifests, path)
        if isinstance(port, str):  # a port name: the Service's port of that name
            (found,) = [
                p["port"]
                for m in self.manifests
                if m.kind == "Service" and m.name == service
                for p in m.obj["spec"]["ports"]
                if p.get("name") == port
            ]
            port = int(found)
        return self.book.local_url(f"{scheme}://{service}:{port}")


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request straight to our own server (no proxy); (status, decoded body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
