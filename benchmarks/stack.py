"""A private orderflow stack for one benchmark run, started and torn down by the benchmark.

Benchmarks must measure the real thing (real HTTP, real processes, a real
Redis-compatible server) and must never touch anything outside themselves, so
each run gets: its own Valkey on a free port, its own SQLite file in a temp
directory (or a private PostgreSQL started for the run, or the MongoDB named by
``ORDERFLOW_MONGO_URL``), the API as a
subprocess (``orderflow api --workers N``) and only the service workers the
benchmark needs, in the demo's process layout unless ``layout`` names another
(``orderflow.agents.services.worker_processes``), all with zero simulator delays.
Every worker serves ``/metrics`` on an admin port of its own (``Stack.metrics_urls``,
with the API's: what ``stage_trace`` scrapes). The processes are run by
``orderflow.agents.processes`` (as the demo's and the tests' are) and stopped, process
group and all, when the benchmark ends, even on error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from orderflow.agents.processes import (
    ProcessError,
    ProcessSpec,
    ProcessTree,
    cli_argv,
    parent_death_signal,
)
from orderflow.agents.readiness import HttpOk
from orderflow.agents.services import SERVICES, Layout, worker_processes
from orderflow.agents.settings import Settings
from orderflow.models.store.localpostgres import LocalPostgres, PostgresNotFound
from orderflow.runtime.localserver import LocalRedisServer, free_port

DEMO_LAYOUT: Layout = Settings.model_fields["demo_layout"].default
"""The worker processes ``orderflow demo`` runs, and so every benchmark's by default."""

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# The service workers of the reference system, as `orderflow worker <target>` targets.
ALL_SERVICES: tuple[str, ...] = tuple(service.target for service in SERVICES)
# Only the outbox relay is needed to prove that every committed order is published.
RELAY_ONLY: tuple[str, ...] = ("orderflow.agents.orders:app",)
STORES: tuple[str, ...] = ("sqlite", "postgres", "mongodb")
PG_DATABASE = "orderflow_bench"


def log(message: str) -> None:
    """Progress goes to stderr so that stdout stays the summary (or the JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class StackError(RuntimeError):
    """The stack could not start; the message names the process and its log tail."""


def store_url_for(
    kind: str, data_dir: Path, postgres: LocalPostgres | None = None, store_options: str = ""
) -> str:
    """The store a benchmark uses: a fresh SQLite file, a database on the run's private
    PostgreSQL, or the MongoDB the operator named. ``store_options`` is the query of the
    SQLite or PostgreSQL URL (``writer_lock=off``, ``group_commit=off``...)."""
    query = f"?{store_options}" if store_options else ""
    if kind == "sqlite":
        return f"sqlite:///{data_dir / 'store.db'}{query}"
    if kind == "postgres":
        assert postgres is not None, "the private PostgreSQL is started first"
        return postgres.create_database(PG_DATABASE) + query
    if store_options:
        raise StackError(f"store options ({store_options}) are read by SQLite and PostgreSQL only")
    if kind == "mongodb":
        url = os.environ.get("ORDERFLOW_MONGO_URL", "")
        if not url:
            raise StackError(
                "--store mongodb needs ORDERFLOW_MONGO_URL (a replica-set URL, e.g. "
                "mongodb://127.0.0.1:27017/orderflow_bench?replicaSet=rs0)"
            )
        return url
    raise StackError(f"unknown store {kind!r} ({', '.join(STORES)})")


@dataclass
class Stack:
    """Valkey + store + API (+ service workers), private to one benchmark run.

    ``api_argv`` replaces the API command (the naive control serves its own app);
    it receives ``{port}`` and ``{workers}`` placeholders.
    """

    http_workers: int = 2
    services: Sequence[str] = RELAY_ONLY
    store: str = "sqlite"
    api_argv: Sequence[str] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 90.0
    keep: bool = False
    layout: Layout = DEMO_LAYOUT
    worker_replicas: int = 1
    """How many times each worker process of ``layout`` runs (more consumers of the same
    groups)."""
    store_options: str = ""
    """The SQLite or PostgreSQL store URL's query (``writer_lock=off``,
    ``group_commit=off``, ``pool_max_size=20``...): a baseline for a side-by-side run;
    every process of the stack gets the same URL."""

    def __post_init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
        self.port = free_port()
        self.redis: LocalRedisServer | None = None
        self.postgres: LocalPostgres | None = None
        # SIGTERM lets the API stop its own Sanic workers; the group is killed after 15 s.
        self.processes = ProcessTree(grace=15.0)
        self.store_url = ""
        self.env: dict[str, str] = {}
        self.admin_ports: dict[str, int] = {}  # worker process name -> its admin port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        assert self.redis is not None, "stack not started"
        return self.redis.url

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
        if self.store == "mongodb":  # the only ORDERFLOW_ variable we pass through
            env["ORDERFLOW_MONGO_URL"] = os.environ.get("ORDERFLOW_MONGO_URL", "")
        env.update(
            {
                "ORDERFLOW_REDIS_URL": self.redis_url,
                "ORDERFLOW_STORE_URL": self.store_url,
                "ORDERFLOW_DATA_DIR": str(self.data_dir),
                "ORDERFLOW_HOST": "127.0.0.1",
                "ORDERFLOW_PORT": str(self.port),
                "ORDERFLOW_HTTP_WORKERS": str(self.http_workers),
                "ORDERFLOW_SIMULATOR_DELAY_MIN": "0",
                "ORDERFLOW_SIMULATOR_DELAY_MAX": "0",
                "ORDERFLOW_LOG_LEVEL": "WARNING",
                "ORDERFLOW_LOG_FORMAT": "json",
                # A benchmark is one address firing many orders on purpose: the per-client
                # rate limit (on by default) is lifted here, by its one setting.
                "ORDERFLOW_ORDER_RATE_LIMIT_PER_MINUTE": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    async def start(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        if self.store == "postgres":
            # In this (the main) thread: the parent-death signal is tied to the forking
            # thread, and an executor thread may end before the benchmark does.
            self.postgres = start_postgres()
        self.store_url = store_url_for(self.store, self.data_dir, self.postgres, self.store_options)
        self.redis = LocalRedisServer(data_dir=self.data_dir / "redis")
        await asyncio.to_thread(self.redis.start)
        log(f"valkey on {self.redis.url}; store {self.store_url}")
        await self.seed()
        self.env = self._environment()
        api_argv = (
            [a.format(port=self.port, workers=self.http_workers) for a in self.api_argv]
            if self.api_argv
            else cli_argv("api", "--workers", str(self.http_workers))
        )
        api_ready = HttpOk(f"{self.base_url}/readyz", timeout=2.0)
        self.processes.add(self._spec("api", api_argv, ready=api_ready))
        for name, targets in worker_processes(
            self.layout, self.services, replicas=self.worker_replicas
        ):
            self.admin_ports[name] = free_port()
            admin = ("--admin-host", "127.0.0.1", "--admin-port", str(self.admin_ports[name]))
            self.processes.add(self._spec(name, cli_argv("worker", *targets, *admin)))
        self.processes.start()
        log(
            f"api ({self.http_workers} workers) on {self.base_url}; "
            f"workers ({self.layout} x{self.worker_replicas}): "
            f"{', '.join(self.services) or 'none'}"
        )
        try:
            await asyncio.to_thread(self.processes.wait_ready, self.ready_timeout)
        except ProcessError as exc:
            raise StackError(str(exc)) from None
        log("stack ready")

    def metrics_urls(self) -> dict[str, str]:
        """Each process's Prometheus ``/metrics``: the API's on its port (summed over its
        Sanic workers; none for a replaced ``api_argv``), each worker's on its admin port."""
        urls = {} if self.api_argv else {"api": f"{self.base_url}/metrics"}
        for name, port in self.admin_ports.items():
            urls[name] = f"http://127.0.0.1:{port}/metrics"
        return urls

    def _spec(self, name: str, argv: list[str], ready: HttpOk | None = None) -> ProcessSpec:
        """A stack process: the stack's environment, the repository as its working
        directory, its output in ``<data_dir>/<name>.log``."""
        log_path = self.data_dir / f"{name}.log"
        return ProcessSpec(name, argv, self.env, cwd=REPO_ROOT, log_path=log_path, ready=ready)

    async def seed(self) -> None:
        """Seed the demo menu so that the API and the benchmark see the same items."""
        from orderflow.models.menu import DEMO_MENU
        from orderflow.models.store import open_store

        store = await open_store(self.store_url)
        try:
            inserted = await store.seed_menu(DEMO_MENU)
            log(f"menu seeded ({inserted} new items)")
        finally:
            await store.close()

    def check_alive(self) -> None:
        """Raise if a stack process died (a crash must not read as a benchmark result)."""
        server = self.redis.process if self.redis is not None else None
        if server is None or server.poll() is not None:
            raise StackError(f"the stack's Valkey died during the run (see {self.data_dir})")
        dead = self.processes.exited()
        if dead:
            name, code, tail = dead[0].name, dead[0].returncode, dead[0].tail()
            raise StackError(f"{name} died during the run (code {code}):\n{tail}")

    async def open_store(self) -> Any:
        from orderflow.models.store import open_store

        return await open_store(self.store_url)

    async def stop(self) -> None:
        # All at once: each worker needs up to one blocking read (about 1 s) to notice.
        await asyncio.to_thread(self.processes.stop)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
            self.redis = None
        if self.postgres is not None:
            await asyncio.to_thread(self._stop_postgres, self.postgres)
            self.postgres = None
        if self.keep:
            log(f"kept {self.data_dir} (logs and store)")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _stop_postgres(self, server: LocalPostgres) -> None:
        """Fast shutdown, its directory removed; with ``--keep`` its log is kept first."""
        server.stop()
        if self.keep and server.base_dir is not None:
            shutil.copyfile(server.log_path, self.data_dir / "postgres.log")
        server.close()

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
            for proc in self.processes:
                log(f"--- {proc.name} log tail ---\n{proc.tail(15)}")
        await self.stop()


def start_postgres() -> LocalPostgres:
    """A private PostgreSQL for one run, as the tests start theirs (``LocalPostgres``:
    Debian's binaries, a temp dir, a free port, as ``nobody`` when root), but with
    durable commits: the benchmark measures a real commit. It gets SIGINT (fast
    shutdown) if the benchmark dies without stopping it."""
    server = LocalPostgres(durable=True, preexec_fn=parent_death_signal(signal.SIGINT))
    try:
        server.start()
    except PostgresNotFound as exc:
        raise StackError(f"--store postgres: {exc}") from None
    except (RuntimeError, TimeoutError) as exc:
        server.close()
        raise StackError(f"the private PostgreSQL did not start: {exc}") from None
    log(f"private PostgreSQL {server.bindir.parent.name} on port {server.port}")
    return server


def run_until_signal(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with SIGTERM and SIGINT cancelling it instead of killing us.

    The stack's processes run in their own sessions (a Ctrl-C in the terminal does
    not reach them), so the benchmark must live long enough to stop them: a signal
    cancels the main task, ``Stack.__aexit__`` tears everything down, and the
    caller sees ``asyncio.CancelledError``. (A background job of a non-interactive
    shell starts with SIGINT ignored; SIGTERM still works there.)
    """

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await main
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    return asyncio.run(guarded())


def run_benchmark(name: str, main: Coroutine[Any, Any, T], report: Callable[[T], None]) -> int:
    """Run a benchmark's ``main`` and report its result; the exit code of its ``main()``.

    1 when the stack failed (the message on stderr, prefixed with ``name``),
    130 when a signal stopped the run (the stack is stopped first), else 0.
    """
    try:
        result = run_until_signal(main)
    except StackError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    report(result)
    return 0


def pid_of(stack: Stack, name: str) -> int:
    """The process id of the stack's process ``name`` (``api``, ``orders``, ...)."""
    process = stack.processes[name].process
    if process is None:
        raise StackError(f"{name} is not running")
    return process.pid


def order_id_of(body: Any) -> str | None:
    """The order id in a 201 body, whether the order is the body or wrapped in ``order``."""
    if isinstance(body, dict):
        if isinstance(body.get("id"), str):
            return str(body["id"])
        inner = body.get("order")
        if isinstance(inner, dict) and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest): no interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def print_table(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """The human summary on stdout: one aligned two-column table."""
    width = max(len(name) for name, _ in rows)
    print(title)
    print("-" * max(len(title), width + 14))
    for name, value in rows:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown:>12}")
