"""The exit status of every ``mailspool`` command (docs/cli.md lists them for users)."""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """What a command's exit status says. ``main`` returns one; ``sys.exit`` takes it as
    the number it is."""

    #: done: every message sent (send), every row queued (enqueue), a worker stopped
    OK = 0
    #: done, but something failed: rows rejected, jobs dead-lettered or cancelled, the
    #: row, job or campaign asked for is not there, or another mailspool error
    SOME_FAILED = 1
    #: could not start: a bad option, setting, file or template; the queue unreachable;
    #: the API server could not bind
    USAGE = 2
    #: stopped with jobs still pending (queued or deferred), or the campaign is paused:
    #: run the same command again (EX_TEMPFAIL)
    PENDING = 75
    #: stopped gracefully by Ctrl-C (128 + SIGINT)
    SIGINT = 130
    #: stopped gracefully by SIGTERM (128 + SIGTERM)
    SIGTERM = 143

    @classmethod
    def for_signal(cls, signum: int) -> ExitCode:
        """The status of a run stopped by ``signum`` (SIGINT or SIGTERM)."""
        return cls.SIGINT if signum == signal.SIGINT else cls.SIGTERM
