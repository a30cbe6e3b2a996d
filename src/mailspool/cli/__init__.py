"""The command line: the parser, the commands, and their exit codes."""

from mailspool.cli.parser import main

__all__ = ["main"]
