"""The Dockerfile read instruction by instruction, for the tests that check or imitate it.

`test_dockerfile.py` checks its structure offline; the workload tests read the
runtime stage's ENV, USER, WORKDIR, ENTRYPOINT and CMD from it when no container
engine can build it, so that the plain processes get what the image would give.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from tests.deploy.paths import DOCKERFILE


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    out = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        out.append(Instruction(keyword.upper(), arguments.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


@dataclass(frozen=True)
class ImageConfig:
    """What an image gives a container that the pod spec may leave out."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    user: str
    workdir: str


def runtime_stage_config() -> ImageConfig:
    """The last stage's ENV (``K=V`` form), USER, WORKDIR and exec-form ENTRYPOINT/CMD."""
    runtime = stages(parse(DOCKERFILE.read_text(encoding="utf-8")))[-1]
    env: dict[str, str] = {}
    config: dict[str, str] = {}
    for instruction in runtime:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                name, equals, value = word.partition("=")
                assert equals, f"ENV {instruction.arguments!r}: only the K=V form is read here"
                env[name] = value
        else:
            config[instruction.keyword] = instruction.arguments
    return ImageConfig(
        env=env,
        entrypoint=json.loads(config.get("ENTRYPOINT", "[]")),
        cmd=json.loads(config.get("CMD", "[]")),
        user=config.get("USER", ""),
        workdir=config.get("WORKDIR", "/"),
    )
