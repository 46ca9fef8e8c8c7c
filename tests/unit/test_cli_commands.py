"""The CLI registers only the command it runs (start-up cost), and that changes nothing a user
sees: the same help, the same errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import COMMANDS, build_parser, command_of

ROOT = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no commands")


def test_each_command_alone_has_the_help_it_has_among_all() -> None:
    every = _commands(build_parser())
    assert list(every) == [name for name, _ in COMMANDS]
    for name, _ in COMMANDS:
        alone = _commands(build_parser(name))
        assert list(alone) == [name]
        assert alone[name].format_help() == every[name].format_help()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["ingest", "--json"], "ingest"),
        (["-v", "-v", "consent-url", "--tenant", "x"], "consent-url"),
        (["--help"], None),
        ([], None),
        (["ingst"], None),  # a typo: every command is listed in the error
        (["-v", "tenants", "list"], "tenants"),
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert command_of(argv) == command


def test_a_typo_is_answered_with_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["ingst"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'ingst'" in err
    assert all(f"'{name}'" in err for name, _ in COMMANDS)


@pytest.mark.subprocess
def test_running_a_command_imports_no_other_command_module() -> None:
    code = (
        "import sys; from shared.cli import build_parser, command_of;"
        "build_parser(command_of(['ingest', '--json']));"
        "print(sorted(m for m in sys.modules if m.startswith('shared.cli.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    loaded = eval(result.stdout)  # noqa: S307 - our own printed list
    assert "shared.cli.ingest" in loaded
    # ingest borrows ``--as-user`` from login; no other command's module is loaded
    others = {f"shared.cli.{m}" for _, m in COMMANDS if m not in ("ingest", "login")}
    assert len(others) == len(COMMANDS) - 2
    assert not others & set(loaded), loaded
