"""What the commands share: the source argument and, for the two that deliver (``send``
and ``worker``), one run: its signals and its tally."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.delivery.observer import Counter
from mailspool.errors import ConfigError


def source_path(args: argparse.Namespace) -> Path:
    """The CSV or JSONL file named on the command line, which must exist."""
    path = Path(args.source)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return path


@dataclass(frozen=True, slots=True)
class Tally:
    """What one process's worker recorded (sent, deferred, dead; ``ambiguous``: how many
    of those may have been delivered twice; ``suppressed``: jobs not sent because every
    recipient was suppressed after they were queued) in ``elapsed_s`` seconds, and the
    rate of messages sent. These count outcomes, not jobs: a job deferred twice counts
    twice in ``deferred``; the jobs left deferred are the queue's to count (status)."""

    sent: int
    deferred: int
    dead: int
    ambiguous: int
    suppressed: int
    elapsed_s: float
    rate_per_s: float

    def fields(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryRun:
    """One run of a command that delivers (``send``, ``worker``): its clock, the count of
    what its worker recorded (``counter``: give it to the worker as an observer) and the
    signal that stopped it, if one did.

    :meth:`stop_on_signals` makes SIGINT and SIGTERM stop the run gracefully: the first
    stops the worker (no more claims; messages in flight finish; the rest is handed back),
    a second exits at once with 130 or 143.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.counter = Counter()
        #: the signal that stopped the run (the first one), if any
        self.signal: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    def stop_on_signals(
        self,
        stop: Callable[[], None],
        notice: Callable[[int], None],
        signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
    ) -> None:
        """At the first of ``signals``: ``notice(signum)``, then ``stop()``; at the next
        one, exit now. Call from the event loop the worker runs on."""
        loop = asyncio.get_running_loop()

        def handler(signum: int) -> None:
            if self.signal is not None:  # a second Ctrl-C: stop now
                raise SystemExit(ExitCode.for_signal(signum))
            self.signal = signum
            notice(signum)
            stop()

        for sig in signals:
            with contextlib.suppress(NotImplementedError):  # no signals on this platform
                loop.add_signal_handler(sig, handler, sig)

    def signal_exit(self) -> ExitCode | None:
        """130 or 143 when a signal stopped the run, else None."""
        return None if self.signal is None else ExitCode.for_signal(self.signal)

    def tally(self) -> Tally:
        """What this run's worker has recorded so far, and how fast it sent."""
        elapsed = time.monotonic() - self.started
        c = self.counter
        return Tally(
            sent=c.sent_count,
            deferred=c.deferred_count,
            dead=c.dead_count,
            ambiguous=c.ambiguous,
            suppressed=c.suppressed_count,
            elapsed_s=round(elapsed, 3),
            rate_per_s=round(c.sent_count / elapsed, 1) if elapsed > 0 else 0.0,
        )
