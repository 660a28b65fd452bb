"""Podman for the workload tests: a stand-in base image, the project's image, run flags.

No image registry is reachable where these tests run (PyPI, Debian's mirrors and
npm are), so the Dockerfile's ``python:3.11-slim`` cannot be pulled. The base is
a **stand-in**: Debian bookworm made by ``debootstrap --variant=minbase`` with
Debian's Python 3.11, pip and venv, its ``EXTERNALLY-MANAGED`` marker removed and
``python``/``pip`` linked into ``/usr/local/bin`` (where the official image has
them). Its tarball is cached under ``~/.cache/orderflow/`` keyed by the recipe,
and the imported image is tagged with the same key, so only the first run on a
machine pays for debootstrap. The project's image is then built from the real
``Dockerfile`` with ``PYTHON_IMAGE`` pointing at the stand-in; podman's layer
cache keeps the wheel stage while the sources are unchanged.

Flags, as found to work on the project's Debian 12 machines: Debian's ``runc``
(crun fails on their cgroup layout) with the ``cgroupfs`` manager, explicit
ulimits (podman's defaults fail there), the host's CA bundle mounted into the
build (pip inside it needs one), host networking.

:func:`run_flags` is the heart: a rendered container's security context and
volumes as ``podman run`` options, with nothing podman would add on its own
(``--read-only-tmpfs=false``: podman otherwise mounts a writable /tmp, /run and
/var/tmp into every read-only container, which would hide a path the chart
forgot to make writable).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.deploy.dockerfile import ImageConfig
from tests.deploy.paths import ROOT
from tests.deploy.wiring import Launch
from tests.deploy.workloads import UnsupportedSpec

log = logging.getLogger("tests.deploy.containers")

ENGINE = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
CA_BUNDLE = Path("/etc/ssl/certs")
BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3", "python3-pip", "python3-venv", "ca-certificates"],
    "mirror": "http://deb.debian.org/debian",
    # Bump when the steps in _debootstrap() change: the key names the cached tarball.
    "steps": 1,
}
BASE_REPOSITORY = "localhost/orderflow-test-base"
IMAGE_REPOSITORY = "localhost/orderflow-chart-test"
BUILD_TIMEOUT = 900.0


class EngineUnavailable(RuntimeError):
    """Containers cannot run here; the message says why (the skip reason)."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "orderflow"


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """Run ``podman ARGS`` with the engine flags; its stdout (stderr in the error)."""
    done = subprocess.run(
        [*ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


def why_unavailable() -> str | None:
    """None when podman and runc can run root containers here; else the reason."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs podman, runc and debootstrap)"
    if os.geteuid() != 0:
        return "not root: the stand-in base is made with debootstrap and run as root podman"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {getattr(exc, 'stderr', '') or exc}"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One test session at a time builds the base (a second one waits, then reuses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _debootstrap(tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable("debootstrap is not installed (needed once, for the base)")
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        include = ",".join(BASE_RECIPE["include"])  # type: ignore[arg-type]
        command = ["debootstrap", f"--variant={BASE_RECIPE['variant']}", f"--include={include}"]
        command += [str(BASE_RECIPE["suite"]), str(rootfs), str(BASE_RECIPE["mirror"])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise EngineUnavailable(f"debootstrap failed: {done.stdout[-1500:]}{done.stderr}")
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()  # the official image's pip installs system-wide too
        for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            (rootfs / "usr/local/bin" / name).symlink_to(target)
        for cached in (rootfs / "var/cache/apt").rglob("*"):
            if cached.is_file():
                cached.unlink()  # downloaded .debs and package lists: not needed to run
        partial = tarball.with_suffix(".part")
        with partial.open("wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait() != 0:
                raise RuntimeError(f"tar of {rootfs} failed")
        partial.rename(tarball)


def base_image() -> str:
    """The stand-in base's tag: imported from the cached tarball, made first if need be."""
    key = recipe_key()
    tag = f"{BASE_REPOSITORY}:{key}"
    tarball = cache_dir() / f"debian-{BASE_RECIPE['suite']}-python-{key}.tar.gz"
    with _locked(cache_dir() / "base.lock"):
        if _exists(tag):
            log.info("base image %s already present", tag)
            return tag
        if not tarball.exists():
            started = time.monotonic()
            _debootstrap(tarball)
            log.info("debootstrap'd %s in %.0fs", tarball, time.monotonic() - started)
        podman("import", str(tarball), tag, timeout=600)
        log.info("imported %s as %s", tarball, tag)
    return tag


def _exists(tag: str) -> bool:
    return subprocess.run([*ENGINE, "image", "exists", tag], check=False).returncode == 0


def check_runs(base: str) -> None:
    """Run ``true`` in the base with the run flags: :class:`EngineUnavailable` when the
    machine cannot run containers, so that a failing build below is the project's fault."""
    command = ["run", "--rm", "--network", "host", *ULIMITS, "--pull=never", base, "true"]
    try:
        podman(*command, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise EngineUnavailable(f"podman cannot run a container here: {detail}") from None


def build_image(base: str, log_path: Path) -> str:
    """``podman build`` of the repository's Dockerfile on ``base``; the image's tag."""
    tag = f"{IMAGE_REPOSITORY}:{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"
    command = [*ENGINE, "build", "--network", "host", *ULIMITS, "--pull=never"]
    command += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "--build-arg", f"PYTHON_IMAGE={base}"]
    command += ["-t", tag, str(ROOT)]
    with log_path.open("w") as output:
        done = subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False
        )
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise AssertionError(f"podman build failed ({done.returncode}); {log_path}:\n{tail}")
    return tag


def image_config(tag: str) -> ImageConfig:
    """What the built image gives every container (``podman image inspect``)."""
    config = json.loads(podman("image", "inspect", tag))[0]["Config"]
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    return ImageConfig(
        env=env,
        entrypoint=list(config.get("Entrypoint") or []),
        cmd=list(config.get("Cmd") or []),
        user=config.get("User", ""),
        workdir=config.get("WorkingDir", "/"),
    )


def _tmpfs_size(size_limit: str | None) -> str:
    """An emptyDir sizeLimit (``256Mi``) as a tmpfs size option (``size=256m``)."""
    if size_limit is None:
        return ""
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if size_limit.endswith(suffix):
            return f",size={size_limit.removesuffix(suffix)}{unit}"
    if size_limit.isdigit():
        return f",size={size_limit}"
    raise UnsupportedSpec(f"emptyDir sizeLimit {size_limit!r}")


def run_flags(launch: Launch, image: ImageConfig) -> list[str]:
    """The rendered security context, volumes and environment as ``podman run`` flags."""
    workload = launch.workload
    flags = ["--network", "host", *ULIMITS, "--pull=never"]
    user = str(workload.run_as_user) if workload.run_as_user is not None else ""
    if user and workload.run_as_group is not None:
        user += f":{workload.run_as_group}"
    if user:
        flags += ["--user", user]
    effective_uid = (user or image.user or "0").split(":")[0]
    if workload.run_as_non_root and effective_uid in {"0", "root"}:
        raise AssertionError(f"{workload}: runAsNonRoot, but it would run as {effective_uid}")
    if workload.read_only_root:
        flags += ["--read-only", "--read-only-tmpfs=false"]
    for capability in workload.dropped_capabilities:
        flags += ["--cap-drop", capability]
    if workload.no_new_privileges:
        flags += ["--security-opt", "no-new-privileges"]
    if workload.seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif workload.seccomp not in {None, "RuntimeDefault"}:
        raise UnsupportedSpec(f"{workload}: seccompProfile {workload.seccomp}")
    for path, size_limit in sorted(workload.writable.items()):
        # An emptyDir: a fresh, empty (notmpcopyup), world-writable directory, exec allowed.
        options = f"rw,exec,nosuid,nodev,notmpcopyup,mode=0777{_tmpfs_size(size_limit)}"
        flags += ["--tmpfs", f"{path}:{options}"]
    for name, value in sorted(launch.env.items()):
        flags += ["--env", f"{name}={value}"]
    if workload.command is not None:
        flags += ["--entrypoint", json.dumps(launch.entrypoint)]
    return flags


def run_argv(name: str, launch: Launch, image_tag: str, image: ImageConfig) -> list[str]:
    """``podman run`` in the foreground (removed when it exits), as the container ``name``."""
    flags = run_flags(launch, image)
    return [*ENGINE, "run", "--rm", "--name", name, *flags, image_tag, *launch.arguments]


def remove(name: str) -> None:
    """Force-remove the container ``name`` if it is still there (cleanup after a failure)."""
    podman("rm", "--force", "--ignore", "--time", "0", name, timeout=60, check=False)
