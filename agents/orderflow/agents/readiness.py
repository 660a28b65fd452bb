"""Readiness checks for :mod:`orderflow.agents.processes`: when a started child is "up".

A check is asked repeatedly while the tree waits; it must be cheap and must not
raise. ``HttpOk`` keeps the last answer so a timeout message says what the child
answered instead of only "not ready".
"""

from __future__ import annotations

import abc
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol


class ChildOutput(Protocol):
    """What a check may look at: the child's name, whether it logs to a file, and
    that log since its last start."""

    @property
    def name(self) -> str: ...

    @property
    def log_path(self) -> Path | None: ...

    def output(self) -> str: ...


class Readiness(abc.ABC):
    """A readiness check: :meth:`check` is polled until it returns True.

    ``str()`` says what is awaited, and what was last seen, for the timeout message.
    """

    @abc.abstractmethod
    def check(self, child: ChildOutput) -> bool: ...


class HttpOk(Readiness):
    """``GET url`` answers 200. A port that only accepts connections is not enough
    for an HTTP server: Sanic's main process listens before its workers serve."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.last = "no answer yet"
        # Our own servers, on loopback: never ask a proxy from http_proxy and friends.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check(self, child: ChildOutput) -> bool:
        try:
            with self._opener.open(self.url, timeout=self.timeout) as response:
                self.last = f"HTTP {response.status}"
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            body = exc.read(200).decode(errors="replace")
            self.last = f"HTTP {exc.code} {body}"
        except OSError as exc:
            self.last = repr(exc)
        return False

    def __str__(self) -> str:
        return f"GET {self.url} answering 200 (last: {self.last})"


class LinePrinted(Readiness):
    """The child's log (since its last start) contains ``text``; needs a ``log_path``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def check(self, child: ChildOutput) -> bool:
        if child.log_path is None:
            raise ValueError(f"{child.name}: LinePrinted needs a log_path to read")
        return self.text in child.output()

    def __str__(self) -> str:
        return f"{self.text!r} in the log"


__all__ = ["HttpOk", "LinePrinted", "Readiness"]
