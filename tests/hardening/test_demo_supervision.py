"""``orderflow demo`` supervises its children and leaves nothing behind (issue 9, points 10, 11).

* The supervisor on its own, with real short-lived processes: a child that keeps
  exiting is restarted after a doubling back-off, then given up on after the
  limit, while its sibling keeps running untouched.
* The real demo (private Valkey, SQLite, free port, zero simulator delays):
  a worker SIGKILLed comes back (a second pid for its role), the API SIGKILLed
  comes back too (its orphaned Sanic worker is killed, the port is served
  again), an order placed afterwards is delivered; then the demo is stopped,
  once per way it can be stopped: SIGINT, SIGTERM to its pid, SIGTERM to its
  process group followed by a second one (``timeout`` signals the group and
  ``make`` forwards its own: the second SIGTERM once killed everything, "0/5
  processes exited cleanly"), SIGHUP (a closed terminal). Each time it exits 0,
  its summary says every child exited cleanly, none of the processes it had
  started (collected from /proc before the stop) is alive, and the port can be
  bound again. A child that crash-loops stops the demo, saying which, with the
  same result.
* The same with ``--layout combined`` (issue 13: every service's agents in one
  worker process) and the default ``paired`` (orders + delivery in ``writers``,
  simulator + notifications in ``reactors``): the worker of several services
  SIGKILLed comes back and orders flow again, and every way of stopping leaves
  nothing behind ("2/2", "3/3 processes exited cleanly").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orderflow.agents.processes import ProcessSpec, ProcessTree
from orderflow.agents.services import COMBINED_WORKER, LAYOUTS, Layout, worker_processes
from orderflow.agents.supervision import RestartPolicy, Supervisor
from tests.proctree import descendants, port_is_free, still_running
from tests.system.demo_process import RunningDemo, http_get, http_post_json

STOP_TIMEOUT = 60.0
GUARD = 60.0  # seconds: a guard against a hang, not a latency assertion
WORKER_ROLES = ("orders", "delivery", "notifications", "simulator")


def eventually(condition: Callable[[], bool], what: str, within: float = GUARD) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        time.sleep(0.1)


# -- the supervisor on its own -------------------------------------------------------


def test_restart_policy_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=8.0)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_supervisor_restarts_with_back_off_then_gives_up_on_a_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = ProcessSpec(
        "failing", [sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "f.log"
    )
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    steady = ProcessSpec("steady", sleeper, log_path=tmp_path / "s.log")
    policy = RestartPolicy(first_delay=0.1, max_delay=0.4, max_restarts=3, window=60.0)
    caplog.set_level(logging.WARNING, logger="orderflow.supervision")
    with ProcessTree([failing, steady], grace=5.0) as tree:
        tree.start()
        steady_pid = tree["steady"].process.pid  # type: ignore[union-attr]
        supervisor = Supervisor(tree, policy)
        deadline = time.monotonic() + GUARD
        while (crash_loop := supervisor.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert crash_loop is not None
        assert (crash_loop.child.name, crash_loop.exits) == ("failing", 4)
        assert "failing exited 4 times within 60s (last exit code 3)" in str(crash_loop)
        assert tree["failing"].starts == 4 and supervisor.restarts == {"failing": 3}
        # The sibling was never touched: same process, started once, still running.
        assert tree["steady"].alive() and tree["steady"].starts == 1
        assert tree["steady"].process.pid == steady_pid  # type: ignore[union-attr]
    announced = [r.getMessage() for r in caplog.records if "next attempt in" in r.getMessage()]
    delays = [m.split("next attempt in ")[1].split("s ")[0] for m in announced]
    assert delays == ["0.1", "0.2", "0.4"]
    assert all(m.startswith("failing exited (code 3)") for m in announced)


# -- the real demo ---------------------------------------------------------------------


NEEDLES = {
    "api": "orderflow.agents.cli api",
    **{
        name: "worker " + " ".join(targets)
        for layout in LAYOUTS
        for name, targets in worker_processes(layout)
    },
}
"""How each role's command line ends: the API, and every worker process of every layout."""


def pids_of(demo: RunningDemo, role: str) -> list[int]:
    """The demo's children running ``role``: a worker process of a layout (a service's,
    ``workers``, ``writers``, ``reactors``) or ``api`` (the API's main process)."""
    return [pid for pid, cmd in descendants(demo.pid).items() if cmd.endswith(NEEDLES[role])]


def sanic_workers(demo: RunningDemo) -> dict[int, str]:
    found = {}
    for pid, cmd in descendants(demo.pid).items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"SANIC_WORKER_NAME=Sanic-Server" in environ:
            found[pid] = cmd
    return found


def healthy(demo: RunningDemo) -> bool:
    try:
        return http_get(demo.base_url + "/healthz")[0] == 200
    except OSError:
        return False


def delivered_order(demo: RunningDemo) -> dict[str, object]:
    menu = json.loads(http_get(demo.base_url + "/api/v1/menu")[2])
    items = menu["items"] if isinstance(menu, dict) else menu
    order = http_post_json(
        demo.base_url + "/api/v1/orders", {"lines": [{"item_id": items[0]["id"], "quantity": 1}]}
    )
    url = f"{demo.base_url}/api/v1/orders/{order['id']}"
    current: dict[str, object] = {}

    def is_delivered() -> bool:
        nonlocal current
        current = json.loads(http_get(url)[2])
        return current["status"] == "delivered"

    eventually(is_delivered, f"order {order['id']} delivered")
    return current


def stop_and_check(
    demo: RunningDemo, stop: Callable[[], None], restarts: str = "", processes: int = 5
) -> None:
    """Stop the demo with ``stop``; then it exited 0, said every one of its ``processes``
    children exited cleanly, nothing it started is alive and its port is free."""
    tree = descendants(demo.pid)
    assert sum(cmd.endswith("orderflow.agents.cli api") for cmd in tree.values()) == 1, tree
    assert sanic_workers(demo), tree  # the API's Sanic worker is among what must go
    assert any("valkey" in cmd for cmd in tree.values()), tree
    stop()
    code = demo.process.wait(timeout=STOP_TIMEOUT)
    summary = demo.wait_for_line("orderflow demo stopped", 10)  # the whole story, then:
    assert code == 0, demo.output()
    assert f"{processes}/{processes} processes exited cleanly" in summary, demo.output()
    if restarts:
        assert f"restarts: {restarts};" in summary
    leftovers = {pid: cmd for pid, cmd in tree.items() if still_running(pid, cmd)}
    assert leftovers == {}
    assert port_is_free(demo.port)


@pytest.mark.timeout(300)
def test_killed_children_are_restarted_and_orders_still_flow_then_sigint_stops_it(
    tmp_path: Path,
) -> None:
    demo = RunningDemo(tmp_path, args=("--layout", "split"))
    try:
        demo.wait_started()
        assert all(len(pids_of(demo, role)) == 1 for role in (*WORKER_ROLES, "api"))

        # A worker SIGKILLed comes back as a new process; the others keep theirs.
        (orders,) = pids_of(demo, "orders")
        siblings = {role: pids_of(demo, role) for role in WORKER_ROLES if role != "orders"}
        os.kill(orders, signal.SIGKILL)
        demo.wait_for_line("orders exited (code -9); next attempt in 0.5s", GUARD)
        eventually(lambda: pids_of(demo, "orders") not in ([], [orders]), "a new orders worker")
        assert {role: pids_of(demo, role) for role in siblings} == siblings

        # The API SIGKILLed: its Sanic worker (which holds the port) is killed with it,
        # and a new API serves the same port.
        (api,) = pids_of(demo, "api")
        old_workers = sanic_workers(demo)
        assert old_workers
        os.kill(api, signal.SIGKILL)
        demo.wait_for_line("api exited (code -9); next attempt in", GUARD)
        eventually(lambda: pids_of(demo, "api") not in ([], [api]), "a new API process")
        eventually(lambda: healthy(demo), "the new API answering /healthz")
        assert not any(still_running(pid, cmd) for pid, cmd in old_workers.items())

        order = delivered_order(demo)
        assert [h["status"] for h in order["history"]] == [  # type: ignore[attr-defined]
            "created",
            "confirmed",
            "preparing",
            "out_for_delivery",
            "delivered",
        ]
        stop_and_check(demo, lambda: os.kill(demo.pid, signal.SIGINT), restarts="orders=1, api=1")
    finally:
        demo.kill_everything()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("layout", "killed"), [("combined", COMBINED_WORKER), ("paired", "writers")]
)
def test_a_worker_of_several_services_killed_comes_back_and_orders_still_flow(
    tmp_path: Path, layout: Layout, killed: str
) -> None:
    """``combined``'s one worker, and ``paired``'s ``writers`` (orders + delivery): the
    supervisor restarts the process, all its services with it; ``paired`` is also the
    layout the demo runs when none is named."""
    demo = RunningDemo(tmp_path, args=() if layout == "paired" else ("--layout", layout))
    processes = worker_processes(layout)
    try:
        line = demo.wait_started()
        assert all(pids_of(demo, role) == [] for role in WORKER_ROLES)  # no per-service one
        assert all(len(pids_of(demo, name)) == 1 for name, _ in processes)
        (worker,) = pids_of(demo, killed)
        siblings = {name: pids_of(demo, name) for name, _ in processes if name != killed}
        assert len(pids_of(demo, "api")) == 1
        os.kill(worker, signal.SIGKILL)
        demo.wait_for_line(f"{killed} exited (code -9); next attempt in 0.5s", GUARD)
        eventually(lambda: pids_of(demo, killed) not in ([], [worker]), f"a new {killed}")
        assert {name: pids_of(demo, name) for name in siblings} == siblings
        order = delivered_order(demo)
        assert [h["status"] for h in order["history"]][-1] == "delivered"  # type: ignore[attr-defined]
        stop_and_check(
            demo, lambda: os.kill(demo.pid, signal.SIGTERM), f"{killed}=1",
            processes=1 + len(processes),
        )  # fmt: skip
        assert f"{layout} layout" in line or f"{layout} layout" in demo.output()
    finally:
        demo.kill_everything()


@pytest.mark.timeout(180)
def test_a_crash_loop_stops_the_demo_with_a_message_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """With ORDERFLOW_DEMO_RESTART_LIMIT=0 the first exit is already one too many."""
    demo = RunningDemo(tmp_path, {"ORDERFLOW_DEMO_RESTART_LIMIT": "0"}, args=("--layout", "split"))
    try:
        demo.wait_started()
        tree = descendants(demo.pid)
        (delivery,) = pids_of(demo, "delivery")
        os.kill(delivery, signal.SIGKILL)
        assert demo.process.wait(timeout=STOP_TIMEOUT) == 1
        demo.wait_for_line("orderflow demo stopped", 10)
        output = demo.output()
        assert (
            "delivery exited 1 time within 60s (last exit code -9): giving up on it;"
            " stopping the demo" in output
        ), output
        assert "4/5 processes exited cleanly (not: delivery=-9)" in output
        assert {pid: cmd for pid, cmd in tree.items() if still_running(pid, cmd)} == {}
        assert port_is_free(demo.port)
    finally:
        demo.kill_everything()


def sigterm_to_the_group_then_forwarded(demo: RunningDemo) -> None:
    """What ``timeout 60 make demo`` does: SIGTERM to the group, then make forwards its own."""
    os.killpg(demo.pid, signal.SIGTERM)
    time.sleep(0.3)  # the forwarded copy comes after the first was handled (else they merge)
    os.kill(demo.pid, signal.SIGTERM)


STOPS: dict[str, Callable[[RunningDemo], None]] = {
    "sigterm": lambda demo: os.kill(demo.pid, signal.SIGTERM),
    "sigterm-to-group-twice": sigterm_to_the_group_then_forwarded,
    "sighup": lambda demo: os.kill(demo.pid, signal.SIGHUP),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("how", list(STOPS))
def test_every_way_of_stopping_the_demo_leaves_nothing_behind(
    tmp_path: Path, how: str, layout: Layout
) -> None:
    demo = RunningDemo(tmp_path, args=("--layout", layout))
    try:
        demo.wait_started()
        expected = 1 + len(worker_processes(layout))  # the API and the layout's workers
        stop_and_check(demo, lambda: STOPS[how](demo), processes=expected)
    finally:
        demo.kill_everything()
