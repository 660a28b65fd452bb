"""A private PostgreSQL server process, for the tests and the benchmarks.

The PostgreSQL half of the contract suite and the driver benchmark must never
depend on a server someone else started (a developer's own cluster, or the one
a machine runs on 5432): its data, settings and version would be theirs, and a
test that drops databases must not touch it. So, like the private Valkey of
:mod:`orderflow.runtime.localserver`, a :class:`LocalPostgres` runs ``initdb``
into a fresh temporary directory and starts ``postgres`` on a free port of
127.0.0.1, TCP only (no Unix socket), with ``trust`` authentication for the
superuser ``postgres``; :meth:`LocalPostgres.close` stops it and deletes the
directory.

* **Binaries**: Debian installs them outside ``PATH``, in
  ``/usr/lib/postgresql/<version>/bin`` (the newest version found wins); else
  ``initdb`` on ``PATH`` (Homebrew, other distributions). None found raises
  :class:`PostgresNotFound`, whose message says what to install.
* **Root**: PostgreSQL refuses to run as root, and CI runs as root. Then
  ``initdb`` and ``postgres`` run as an unprivileged user (``nobody`` by
  default: ``Popen(user=, group=, extra_groups=[])``, i.e. ``setreuid``/
  ``setregid`` and no supplementary groups), the temporary directory is
  handed to that user, and the working directory of both is that directory
  (PostgreSQL resolves its own path from there and fails in a directory it
  cannot read).
* **Durability**: ``durable=False`` (the tests) turns off ``fsync``,
  ``synchronous_commit`` and ``full_page_writes``: nothing there must survive
  a power loss, and it makes commits cheap. The benchmarks keep the defaults
  (``durable=True``), so their commit latency is a real one.

Stdlib only: the readiness check reads ``postmaster.pid`` (its last line says
``ready`` once connections are accepted), so no driver is needed to start it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from orderflow.runtime.localserver import StartedInWith

DEBIAN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"


class PostgresNotFound(RuntimeError):
    """No ``initdb`` to start a private server with."""


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: Debian's newest, else ``PATH``."""
    candidates = sorted(
        Path("/").glob(DEBIAN_GLOB.lstrip("/")), key=lambda path: _version(path.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresNotFound(
        f"no PostgreSQL server binaries: nothing matches {DEBIAN_GLOB} and initdb is not on PATH."
        " Install Debian's 'postgresql' package (apt-get install postgresql; .ci/run does) or"
        " your platform's PostgreSQL server"
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres(StartedInWith):
    """One PostgreSQL cluster in a temporary directory, served on 127.0.0.1:``port``."""

    def __init__(
        self,
        *,
        port: int | None = None,
        durable: bool = False,
        bindir: str | Path | None = None,
        run_as: str = UNPRIVILEGED_USER,
        extra_settings: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.bindir = Path(bindir) if bindir else find_postgres_bindir()
        self.port = port or _free_port()
        self.durable = durable
        self.extra_settings = extra_settings or {}
        # Run in the server before exec, e.g. "die with the parent" (PR_SET_PDEATHSIG).
        self.preexec_fn = preexec_fn
        self.user: pwd.struct_passwd | None = pwd.getpwnam(run_as) if os.geteuid() == 0 else None
        self.base_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ urls

    @property
    def url(self) -> str:
        """The superuser's URL on the ``postgres`` database."""
        return self.url_for(SUPERUSER)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "server.log"

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> Self:
        if self.process is not None and self.process.poll() is None:
            return self
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="orderflow-pg-"))
            if self.user is not None:
                os.chown(self.base_dir, self.user.pw_uid, self.user.pw_gid)
            self._initdb()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not to it
                preexec_fn=self.preexec_fn,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        self.wait_ready(timeout)
        return self

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",  # TCP only: no socket file to clash or leak
            "max_connections": "200",
            **self._speed_settings(),
            **self.extra_settings,
        }
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _speed_settings(self) -> dict[str, str]:
        if self.durable:
            return {}
        return {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

    # ``Popen`` arguments that drop root for initdb and the server (PostgreSQL refuses
    # root); all None (no change) when we are not root.

    @property
    def _uid(self) -> int | None:
        return None if self.user is None else self.user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self.user is None else self.user.pw_gid

    @property
    def _groups(self) -> list[int] | None:
        return None if self.user is None else []

    def _initdb(self) -> None:
        assert self.base_dir is not None
        command = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # a throw-away cluster: no need to flush its files
            "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(
            command,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {done.returncode}): {done.stderr.strip() or done.stdout}"
            )

    def wait_ready(self, timeout: float) -> None:
        """Until ``postmaster.pid`` says ``ready``; a server that exits fails at once."""
        deadline = time.monotonic() + timeout
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.05)
        raise TimeoutError(f"postgres not ready on port {self.port}:\n{self.log_tail()}")

    def psql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement with the server's own ``psql`` (no driver needed)."""
        done = subprocess.run(
            [str(self.bindir / "psql"), *self._client_args(database), "-c", statement],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {statement!r}: {done.stderr.strip()}")
        return done.stdout

    def _client_args(self, database: str) -> list[str]:
        return [
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        ]  # fmt: skip

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it, disconnecting whoever is still connected (PostgreSQL 13+)."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit); SIGKILL if stuck."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGINT, signal.SIGQUIT):
            process.send_signal(sig)
            try:
                process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        self.stop()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
