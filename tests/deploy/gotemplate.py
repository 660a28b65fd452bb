"""The `.Values` paths a Helm template reads, found by reading its actions.

Helm parses, renders and lints the templates for real (test_chart_helm.py), but
it does not say which values a template reads: a path that does not exist in
values.yaml renders as empty without any error, and a value no template reads
is silently dead. This module only finds those paths, for test_chart_values.py.
"""

from __future__ import annotations

import re
from pathlib import Path

ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
NAME_CHAIN = r"((?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
RANGE = re.compile(
    r"range\s+\$[A-Za-z0-9_]+\s*,\s*(\$[A-Za-z0-9_]+)\s*:=\s*\$?\.Values" + NAME_CHAIN
)


def _bodies(text: str) -> list[str]:
    """The body of every action, comments left out."""
    bodies = (match.group(1).strip() for match in ACTION.finditer(text))
    return [body for body in bodies if not body.startswith("/*")]


def _split(chain: str) -> tuple[str, ...]:
    return tuple(chain.lstrip(".").split("."))


def values_paths(text: str) -> set[tuple[str, ...]]:
    """Every `.Values.a.b` chain (also `$.Values...` and `.root.Values...`)."""
    pattern = re.compile(r"\.Values" + NAME_CHAIN)
    return {_split(m.group(1)) for body in _bodies(text) for m in pattern.finditer(body)}


def range_bindings(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(`$var`, values path) for every `range $key, $var := .Values.x` (var = each child)."""
    return [
        (m.group(1), _split(m.group(2)))
        for body in _bodies(text)
        for m in [RANGE.search(body)]
        if m
    ]


def variable_paths(text: str, variable: str) -> set[tuple[str, ...]]:
    """Every `$var.a.b` chain read from a given variable."""
    pattern = re.compile(re.escape(variable) + NAME_CHAIN)
    return {_split(m.group(1)) for body in _bodies(text) for m in pattern.finditer(body)}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
