"""SIGTERM and SIGINT as a request for a clean stop, while ``App.run()`` runs.

A worker is stopped by SIGTERM (its supervisor) or SIGINT (Ctrl-C); either should
let the App stop gracefully (finish and ack in-flight events, run the shutdown
hooks) rather than kill it mid-handler. Once ``run()`` is stopping, the handlers are
removed, so a second signal acts as it would without them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_signals(request_stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``request_stop`` on SIGTERM or SIGINT in the running loop; returns the
    function that removes these handlers again (asyncio then puts Python's default
    handlers back, not whatever was installed before). Where handlers cannot be
    installed (not the main thread, no Unix signals), nothing is installed."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, request_stop)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
