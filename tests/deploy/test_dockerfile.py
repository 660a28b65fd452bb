"""The Dockerfile, read instruction by instruction (test_chart_workloads.py builds and runs it).

Proves its structure: a builder stage that makes wheels with `pip wheel`, a
python:3.11-slim runtime that installs only those wheels, a non-root numeric
user, no remote ADD, port 8000 exposed, `orderflow` as entrypoint with `api`
as the default command, and that everything it COPYs exists and survives
.dockerignore.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.deploy.dockerfile import Instruction, parse, stages
from tests.deploy.paths import DOCKERFILE, DOCKERIGNORE, ROOT


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, value = instruction.arguments.split("=", 1)
            defaults[name] = value
    return defaults


def expand(text: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], text)


def test_two_stages_builder_then_slim_runtime(instructions):
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2
    defaults = arg_defaults(instructions)
    builder, runtime = (expand(i.arguments, defaults).split() for i in froms)
    assert builder[-2:] == ["AS", "builder"]
    assert runtime[0] == "python:3.11-slim"


def test_builder_makes_wheels_and_runtime_installs_only_them(instructions):
    builder, runtime = stages(instructions)
    builder_runs = " ".join(i.arguments for i in builder if i.keyword == "RUN")
    assert "pip wheel" in builder_runs
    runtime_runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert "--no-index" in runtime_runs
    assert "--find-links=/wheels" in runtime_runs
    assert any(i.keyword == "COPY" and i.arguments.startswith("--from=builder") for i in runtime)


def test_runs_as_non_root_uid_10001(instructions):
    _, runtime = stages(instructions)
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid == "10001"
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert "--uid 10001" in runs


def test_no_remote_add_and_no_secrets_in_env(instructions):
    for instruction in instructions:
        if instruction.keyword == "ADD":
            assert not re.search(r"https?://|git@", instruction.arguments)
        if instruction.keyword in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN", instruction.arguments, re.I)


def test_exposes_8000_entrypoint_orderflow_default_api(instructions):
    _, runtime = stages(instructions)
    exposed = " ".join(i.arguments for i in runtime if i.keyword == "EXPOSE").split()
    assert "8000" in exposed
    entrypoints = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    commands = [i for i in runtime if i.keyword == "CMD"]
    assert json.loads(entrypoints[-1].arguments) == ["orderflow"]
    assert json.loads(commands[-1].arguments) == ["api"]


def test_api_binds_all_interfaces_in_the_container(instructions):
    """Settings default to 127.0.0.1, which no Service could reach."""
    _, runtime = stages(instructions)
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert "ORDERFLOW_HOST=0.0.0.0" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if fnmatch.fnmatch(path, body) or (
            body.endswith("/**") and path.startswith(body[:-3] + "/")
        ):
            ignored = not negate
    return ignored


def test_everything_copied_exists_and_is_not_dockerignored(instructions):
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    builder, _ = stages(instructions)
    sources = []
    for instruction in builder:
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            sources += instruction.arguments.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        probe = source if (ROOT / source).is_file() else f"{source}/__init__.py"
        assert not _ignored(probe, patterns), f"{probe} is excluded by .dockerignore"
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("tests/deploy/test_dockerfile.py", patterns)


def test_build_copies_every_package_and_the_readme(instructions):
    """pyproject's package list and readme must all reach the builder stage."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    builder, _ = stages(instructions)
    copied = " ".join(i.arguments for i in builder if i.keyword == "COPY")
    for directory in project["tool"]["setuptools"]["package-dir"].values():
        root = directory.split("/")[0]
        assert f"{root} ./{root}" in copied, root
    assert project["project"]["readme"] in copied
    assert "mongo" in project["project"]["optional-dependencies"]
