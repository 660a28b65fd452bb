"""The installed names: pyproject's explicit package list must match the source tree.

setuptools cannot discover packages across the three namespace roots (agents/, web/,
models/), so pyproject lists them. A package added to the tree but not to the list would
work from the editable checkout and be missing from the wheel; these tests catch that.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "setuptools"
]


def _packages_in_tree() -> set[str]:
    found: set[str] = set()
    for name, directory in SETUPTOOLS["package-dir"].items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            found.add(".".join((name, *relative)))
    return found


def test_package_list_matches_the_tree() -> None:
    assert set(SETUPTOOLS["packages"]) == _packages_in_tree()


def test_every_root_is_a_namespace_portion_without_init() -> None:
    """``orderflow`` itself has no ``__init__.py`` in any root (PEP 420), so the runtime
    can ship as a distribution of its own beside the application."""
    for directory in SETUPTOOLS["package-dir"].values():
        namespace = (ROOT / directory).parent
        assert namespace.name == "orderflow", directory
        assert not (namespace / "__init__.py").exists(), namespace


def test_every_listed_package_imports_from_its_mapped_directory() -> None:
    for name in SETUPTOOLS["packages"]:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        top = name.split(".")[:2]
        mapped = ROOT / SETUPTOOLS["package-dir"][".".join(top)]
        assert Path(module.__file__).resolve().is_relative_to(mapped), name


RUNTIME_ALONE = """
import importlib, pkgutil, sys
import orderflow.runtime as runtime
for info in pkgutil.walk_packages(runtime.__path__, "orderflow.runtime."):
    if not info.name.endswith("__main__"):  # that one runs the command line
        importlib.import_module(info.name)
application = ("orderflow.agents", "orderflow.web", "orderflow.models")
print(sorted(name for name in sys.modules if name.startswith(application)))
"""


def test_the_runtime_imports_nothing_of_the_application() -> None:
    """Every runtime module, its commands included, imports without the ordering system,
    so ``orderflow.runtime`` could ship as a distribution of its own, unchanged."""
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_ALONE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
