"""Every command-line error is one line on stderr and a non-zero exit code, never a
traceback; ``--version`` and ``--help`` work at every level.

The errors run the real console script (and ``python -m orderflow.runtime``) as
subprocesses: against the private server, against a port where nothing listens, or
with a broken argument or environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata

import pytest

from orderflow.agents.cli import build_parser as orderflow_parser
from orderflow.runtime.cli import build_parser as runtime_parser
from orderflow.runtime.localserver import free_port
from tests.runtime.worker_process import ORDERFLOW, REPO

RUNTIME = (sys.executable, "-m", "orderflow.runtime")


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "ORDERFLOW_REDIS_URL": "", **(env or {})},
        cwd=REPO,
        timeout=60,
        check=False,
    )


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


# (argv after the program, expected exit code, what the line says)
CASES: list[tuple[Sequence[str], int, str]] = [
    (["worker", "no.such.module:app"], 2, "cannot load no.such.module:app: no module named 'no'"),
    (["worker", "os:path"], 2, "os:path is not an orderflow App (got module)"),
    (["worker", "tests.runtime.fault_app:nothing"], 2, "has no attribute 'nothing'"),
    (["worker", "tests.runtime.fault_app:app"], 2, "no Redis URL"),
    (["worker", "tests.runtime.fault_app:app", "--redis-url", "http://x"], 2, "invalid Redis URL"),
    (["worker", "tests.runtime.fault_app:app", "--redis-url", "redis://h/x"], 2, "database number"),
    (["worker", "tests.runtime.fault_app:app", "--concurrency", "0"], 2, "--concurrency"),
    (
        ["worker", "tests.runtime.fault_app:app", "tests.runtime.fault_app:app"],
        2,
        "tests.runtime.fault_app:app names an App already given",
    ),
    (["worker", "tests.runtime.fault_app:app", "os:path"], 2, "os:path is not an orderflow App"),
    (["dlq", "list", "--redis-url", "redis://h:99999/0"], 2, "invalid Redis URL"),
    (["dlq", "list", "--redis-url", "DEAD"], 1, "cannot reach Redis at redis://127.0.0.1:"),
    (["streams", "--redis-url", "DEAD"], 1, "cannot reach Redis at redis://127.0.0.1:"),
    (["streams", "--redis-url", "DEAD_CLUSTER"], 1, "Connection refused"),
    (["streams", "--redis-url", "redis+cluster://h:1/5"], 2, "no database number"),
    (["dlq", "list", "--redis-url", "redis+cluster://h"], 2, "needs host:port for every node"),
    (["dlq", "show", "1-0", "--redis-url", "LIVE"], 1, "no dead letter 1-0"),
    (["dlq", "show", "not-an-id", "--redis-url", "LIVE"], 2, "'not-an-id' is not an entry id"),
    (["dlq", "purge", "--all", "--redis-url", "LIVE"], 2, "add --yes"),
    (["dlq"], 2, "required: ACTION"),
    (["wroker"], 2, "invalid choice: 'wroker'"),
]


@pytest.mark.parametrize(("argv", "code", "says"), CASES, ids=[" ".join(case[0]) for case in CASES])
def test_an_error_is_one_line_and_an_exit_code(argv, code, says, redis_url):
    dead_cluster = f"redis+cluster://127.0.0.1:{free_port()}"
    args = [
        {"DEAD": dead_url(), "LIVE": redis_url, "DEAD_CLUSTER": dead_cluster}.get(arg, arg)
        for arg in argv
    ]
    result = run(str(ORDERFLOW), *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert says in result.stderr
    assert result.stderr.startswith("orderflow")


def test_a_bad_setting_is_one_line_even_before_the_commands_are_built():
    result = run(str(ORDERFLOW), "streams", env={"ORDERFLOW_READ_COUNT": "lots"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "read_count" in result.stderr and "'lots'" in result.stderr


def test_the_runtime_alone_reports_errors_the_same_way():
    result = run(*RUNTIME, "streams", "--redis-url", dead_url())
    assert result.returncode == 1
    assert result.stderr.startswith("python -m orderflow.runtime streams: error: cannot reach")
    assert result.stderr.count("\n") == 1, result.stderr


def test_version_of_the_installed_distribution():
    expected = f"orderflow {metadata.version('orderflow')}"
    assert run(str(ORDERFLOW), "--version").stdout.strip() == expected
    assert run(*RUNTIME, "--version").stdout.strip() == expected


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from parsers(child)


@pytest.mark.parametrize("build", [orderflow_parser, runtime_parser])
def test_every_command_and_subcommand_has_help(build, capsys):
    root = build()
    progs = []
    for parser in parsers(root):
        assert parser.description, f"{parser.prog} has no description"
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {parser.prog}")
        progs.append(parser.prog)
    expected = {"worker", "dlq", "dlq list", "dlq show", "dlq replay", "dlq purge", "streams"}
    assert expected <= {prog.removeprefix(root.prog).strip() for prog in progs}
