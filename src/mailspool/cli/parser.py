"""The ``mailspool`` command line: the parser and ``main``. Flags left unset fall back to
MAILSPOOL_* environment variables, then ``mailspool.toml``, then defaults (mailspool.config).

Each command lives in the module of its name in this package (``mailspool worker`` in
worker.py), imported only when it runs, as ``async def run(args, settings) -> ExitCode``;
its arguments are in commands.py.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mailspool import __version__
from mailspool.cli.commands import COMMANDS, REASONS
from mailspool.cli.exits import ExitCode
from mailspool.errors import ConfigError, MailspoolError, QueueError, SourceError, TemplateError

if TYPE_CHECKING:
    from mailspool.config import Settings

    Command = Callable[[argparse.Namespace, Settings], Awaitable[ExitCode]]

__all__ = ["REASONS", "build_parser", "main", "take_settings"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``command``, only that one gets its arguments
    (the others are still named, with their summaries, for the usage and the help):
    main() parses one command, and the arguments of all of them cost 10 ms of its
    start-up."""
    parser = argparse.ArgumentParser(prog="mailspool", description="Durable email dispatcher.")
    parser.add_argument("--version", action="version", version=f"mailspool {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary, add_arguments in COMMANDS:
        p = sub.add_parser(name, help=summary)
        if command is None or command == name:
            add_arguments(p)
    return parser


async def dispatch(args: argparse.Namespace, settings: Settings) -> ExitCode:
    """Run the command ``args`` names (imported now: ``status`` need not load the API)."""
    module = getattr(args, "module", None) or args.command  # a subcommand's own module
    command: Command = importlib.import_module(f"mailspool.cli.{module}").run
    return await command(args, settings)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, ExitCode]]) -> ExitCode:
    try:
        import uvloop  # faster event loop where available
    except ImportError:  # only uvloop's absence: a command's own ImportError propagates
        import asyncio  # imported here: `mailspool --help` needs no event loop (25 ms)

        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


def take_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``args`` holds, by option name (None: not given on the command line),
    taken out of it: a command reads them from its Settings alone, where the environment
    and the file are merged in, so that no flag's bare value is read past them. Which were
    given stays known as ``args.flags_given`` (PATHs with --imap are refused, with
    MAILSPOOL_IMAP not)."""
    from mailspool.config import Settings, option_name

    given = {}
    for name in map(option_name, Settings.model_fields):
        if hasattr(args, name):
            given[name] = getattr(args, name)
            delattr(args, name)
    args.flags_given = frozenset(k for k, v in given.items() if v is not None)
    return given


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    # the command argparse runs is the first word that is not an option: it alone gets its
    # arguments (none for --help, --version or a wrong name)
    command = next((w for w in words if w != "--" and not w.startswith("-")), "")
    args = build_parser(command).parse_args(words)
    from mailspool.config import load_settings
    from mailspool.observe.logs import configure

    given = take_settings(args)
    try:
        settings = load_settings(**given)
        configure(settings.log_level, settings.log_format)
        return _run(lambda: dispatch(args, settings))
    except (ConfigError, TemplateError, SourceError) as exc:
        print(f"mailspool: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except QueueError as exc:
        print(f"mailspool: queue error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except MailspoolError as exc:
        print(f"mailspool: {exc}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    except KeyboardInterrupt:  # before the command set up its own signal handling
        return ExitCode.SIGINT


if __name__ == "__main__":
    sys.exit(main())
