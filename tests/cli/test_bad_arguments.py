"""Every command and subcommand, found by walking the parser (a new one is covered with no
change here), given bad arguments: an unknown option, a missing required argument, and a
bad value for its typed options (a number, duration, rate, size, choice, address, URL...).
Each run exits 2 (docs/cli.md: a bad option stops a command at start), names what is
wrong on stderr, and never shows a traceback.

An option that takes a value is typed unless FREE_TEXT says why any text will do, so a new
option is tried here until it is checked or listed there. Settings (load_settings checks
them, the same for every command) are each tried once, besides every command's first
typed option; the options a command parses itself are tried for every command. The runs
are subprocesses, as a user runs mailspool, several at a time, each in a directory of its
own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailspool.cli.parser import build_parser
from mailspool.config import Settings, option_name
from tests.support.cli import Result, run_cli

#: options whose value may be any text (by dest), and why
FREE_TEXT = {
    "template": "a file: a missing one stops the run (exit 2)",
    "html": "a file, as --template",
    "from": "a Jinja2 string, rendered per row (a bad address rejects the row)",
    "subject": "a Jinja2 string",
    "key_column": "a column name, looked up per row",
    "timezone_column": "a column name, looked up per row",
    "attachment_dir": "a directory, looked up per row",
    "outbox": "a directory, created when needed",
    "store": "read only with an amqp:// queue",
    "host": "an address to bind: one that cannot be bound stops serve (exit 2)",
    "job": "a job id, looked up (exit 1 when there is none)",
    "out": "a directory, created when needed",
    "tls_cert": "a file, as --template",
    "tls_key": "a file, as --template",
    "write": "a directory, created when needed",
}
#: a value for each required argument, so that the bad one is what stops the command
PLACEHOLDERS = {
    "source": "r.csv",
    "addresses": "a@example.com",
    "file": "list.csv",
    "domain": "example.com",
    "action": "list",
    "selector": "s1",
    "campaign": "spring",  # mailspool campaign show|pause|resume|cancel NAME
}
NUMBER_BAD = "-5"  # every number, duration and size of mailspool is 0 or more
TEXT_BAD = "bogus*"  # not a rate, address, URL, zone, window, choice, name or folder
UNKNOWN = "--no-such-option"
#: the settings, by the name an option gives them
FIELDS = {option_name(f): info for f, info in Settings.model_fields.items()}


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join(("mailspool", *self.path))

    @property
    def has_subcommands(self) -> bool:
        """A command one of whose subcommands must be named (``suppress``)."""
        return any(
            isinstance(a, argparse._SubParsersAction) and a.required for a in self.parser._actions
        )

    @property
    def requires(self) -> bool:
        """Whether argparse refuses the command given no arguments."""
        # a positional of nargs="*" is marked required, yet takes none
        return any(a.required and a.nargs != "*" for a in self.parser._actions)

    def placeholders(self) -> list[str]:
        """A value for each required argument but a subcommand."""
        args: list[str] = []
        for a in self.parser._actions:
            if not a.required or a.nargs == "*" or isinstance(a, argparse._SubParsersAction):
                continue
            assert a.dest in PLACEHOLDERS, f"{self.name}: PLACEHOLDERS needs {a.dest!r}"
            value = PLACEHOLDERS[a.dest]
            args += [a.option_strings[0], value] if a.option_strings else [value]
        return args

    def typed(self) -> Iterator[argparse.Action]:
        """The optional options that take a value not free text."""
        for a in self.parser._actions:
            if a.option_strings and a.nargs != 0 and not a.required and a.dest not in FREE_TEXT:
                yield a


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    yield Command(path, parser)
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from commands(sub, (*path, name))


def setting(a: argparse.Action) -> str | None:
    """The setting the option sets, or None for an option of the command's own."""
    name = option_name(a.dest)
    return name if name in FIELDS else None


def numeric(a: argparse.Action) -> bool:
    if a.choices:
        return False
    if a.type is not None and a.type is not Path:  # int, float, a duration, a size...
        return True
    name = setting(a)
    if name is None:
        return False
    annotation = FIELDS[name].annotation
    kinds = set(typing.get_args(annotation) or (annotation,)) - {type(None)}
    return kinds <= {int, float}


@dataclass(frozen=True)
class Case:
    #: the command tried, and how: "unknown option", "missing argument", "bad value"
    command: tuple[str, ...]
    kind: str
    argv: tuple[str, ...]
    #: what stderr says (one of them): the option's name, or argparse's words
    says: tuple[str, ...]


def cases() -> list[Case]:
    found: list[Case] = []
    tried: set[str] = set()
    for cmd in commands(build_parser()):
        base = (*cmd.path, *cmd.placeholders())
        says = (UNKNOWN, "arguments are required")
        found.append(Case(cmd.path, "unknown option", (*base, UNKNOWN), says))
        if cmd.requires:
            says = ("the following arguments are required",)
            found.append(Case(cmd.path, "missing argument", cmd.path, says))
        if cmd.has_subcommands:
            continue
        typed = list(cmd.typed())
        first = next((a for a in typed if numeric(a)), typed[0] if typed else None)
        for a in typed:
            name = setting(a)
            if a is not first and name in tried:
                continue
            if name is not None:
                tried.add(name)
            opt = a.option_strings[0]
            bad = NUMBER_BAD if numeric(a) else TEXT_BAD
            says = (opt, opt.lstrip("-"), a.dest, name or opt)
            found.append(Case(cmd.path, "bad value", (*base, f"{opt}={bad}"), says))
    return found


def test_the_walk_finds_every_command_and_tries_each() -> None:
    names = {c.name for c in commands(build_parser())}
    assert {
        "mailspool send", "mailspool preview", "mailspool suppress add", "mailspool dkim keygen",
        "mailspool inbound", "mailspool inbound ingest", "mailspool webhooks retry",
    } <= names  # fmt: skip
    tried = {(c.command, c.kind) for c in cases()}
    for cmd in commands(build_parser()):
        assert (cmd.path, "unknown option") in tried, cmd.name
        if not cmd.has_subcommands and list(cmd.typed()):
            assert (cmd.path, "bad value") in tried, cmd.name


def test_bad_arguments_exit_2_without_a_traceback(tmp_path: Path) -> None:
    # what a command reads before it looks at its options, so that the bad one stops it
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "r.csv").write_text("to,subject,body\na@example.com,Hi,Hello\n")
    (inputs / "list.csv").write_text("address\na@example.com\n")

    def run(numbered: tuple[int, Case]) -> str | None:
        """What is wrong with the case's run, or None."""
        n, case = numbered
        cwd = shutil.copytree(inputs, tmp_path / f"case{n}")  # its own queue, outbox...
        try:
            # a guard, not a measure: a worker given a bad value it took would run on
            res = run_cli(cwd, *case.argv, timeout=60)
        except subprocess.TimeoutExpired:
            return f"{case.argv}: still running after 60 s: the bad value was taken"
        out = res.stdout + res.stderr
        if res.returncode != 2 or "Traceback" in out:
            return f"{case.argv}: exit {res.returncode}\n{out[-2000:]}"
        if not any(s in res.stderr for s in case.says):
            return f"{case.argv}: stderr names none of {case.says}:\n{res.stderr[-600:]}"
        return None

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        wrong = [w for w in pool.map(run, enumerate(cases())) if w is not None]
    assert not wrong, f"{len(wrong)} runs went wrong:\n\n" + "\n\n".join(wrong)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # a date past 9999 cannot be shown: it was a traceback (OverflowError)
        (("suppress", "add", "a@example.com", "--expires", "99999999999999999999"), "too far"),
        (("suppress", "add", "a@example.com", "--expires", "0s"), "not in the future"),
        (("send", "r.csv", "--retry-factor", "inf"), "finite"),
        (("webhooks", "retry", "--timeout", "soon"), "bad duration"),
        (("preview", "r.csv", "--row", "0"), "numbered from 1"),
    ],
)
def test_values_out_of_range_exit_2(
    argv: tuple[str, ...], says: str, cli: Callable[..., Result]
) -> None:
    res = cli(*argv)
    assert res.returncode == 2 and says in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
