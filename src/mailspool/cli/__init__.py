"""The command line: the parser and ``main`` (parser.py), one module per command (send,
enqueue, worker, serve, status, preview, dlq, suppress, dkim, inbound), what the delivering
commands share (shared.py: signals, the run's tally) and the exit codes (exits.py)."""

from mailspool.cli.parser import main

__all__ = ["main"]
