"""What the commands share: the source argument, a campaign's state that stops them and,
for the two that deliver (``send`` and ``worker``), one run: its signals and its tally."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailspool.cli.exits import ExitCode
from mailspool.delivery.observer import Counter
from mailspool.errors import ConfigError, QueueError
from mailspool.models import CampaignState
from mailspool.queue import CampaignControl

if TYPE_CHECKING:
    from mailspool.config import Settings
    from mailspool.queue import Queue
    from mailspool.webhooks.run import WebhookRun


def source_path(args: argparse.Namespace) -> Path:
    """The CSV or JSONL file named on the command line, which must exist."""
    path = Path(args.source)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return path


async def campaign_halted(
    queue: CampaignControl, campaign: str, verb: str, *, refuse_paused: bool
) -> tuple[CampaignState, ExitCode | None]:
    """The campaign's state, and the exit code when it stops a command that would queue
    its rows (said on stderr): 1 when it was cancelled (it is over); 75 when it is
    paused and ``refuse_paused`` (run it again once resumed). ``verb``: what the command
    would have done (sent, queued)."""
    state = (await queue.campaign_states([campaign])).get(campaign, CampaignState.ACTIVE)
    if state is CampaignState.CANCELLED:
        print(
            f"mailspool: campaign {campaign} was cancelled: nothing {verb}"
            " (a cancelled campaign stays so; use another --campaign name).",
            file=sys.stderr,
        )
        return state, ExitCode.SOME_FAILED
    if state is CampaignState.PAUSED and refuse_paused:
        print(
            f"mailspool: campaign {campaign} is paused: nothing {verb}. Resume it"
            f" (`mailspool campaign resume {campaign}`), then run the same command again.",
            file=sys.stderr,
        )
        return state, ExitCode.PENDING
    return state, None


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

    :meth:`stop_on_signals` makes SIGINT and SIGTERM stop the run: the first stops the
    worker (no more claims; messages whose SMTP transaction has begun finish; the rest is
    handed back untried), a second stops it now (those cut short are recorded as
    interrupted, possibly delivered; the rest is handed back), and the command still
    says what it did and how to resume; a third exits at once, saying nothing more.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.counter = Counter()
        #: the signal that stopped the run (the first one), if any
        self.signal: int | None = None
        #: the second signal, which stopped the run without waiting, if one came
        self.hurried: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    def stop_on_signals(
        self,
        stop: Callable[[], None],
        notice: Callable[[int, bool], None],
        stop_now: Callable[[], None] | None = None,
        signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
    ) -> None:
        """At the first of ``signals``: ``notice(signum, False)``, then ``stop()``; at the
        second, ``notice(signum, True)``, then ``stop_now()``; at the next one (the second
        without ``stop_now``), exit now. Call from the event loop the worker runs on."""
        loop = asyncio.get_running_loop()

        def handler(signum: int) -> None:
            now = self.signal is not None
            if now and (stop_now is None or self.hurried is not None):
                raise SystemExit(ExitCode.for_signal(signum))  # no more waiting for anything
            if now:
                self.hurried = signum
            else:
                self.signal = signum
            notice(signum, now)
            if stop_now is not None and now:
                stop_now()
            else:
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


async def worker_finished(
    log: Any,
    settings: Settings,
    hooks: WebhookRun,
    queue: Queue,
    delivery: DeliveryRun,
    **who: Any,
) -> None:
    """The end of ``mailspool worker`` (one process or several, ``who`` says which): with
    ``--drain``, the webhook events waited for; then ``worker stopped`` with what it did
    and what is pending, and how to resume after a signal."""
    if settings.drain and hooks.endpoints and delivery.hurried is None:
        left = await hooks.drain(settings.webhook_drain)
        waiting = sum(b.waiting for b in left.values())
        if waiting:
            log.warning("webhook events not delivered yet: kept for the next run", waiting=waiting)
    pending: int | None = None
    with contextlib.suppress(QueueError):  # the tally is still worth logging
        pending = (await queue.stats(settings.campaign)).pending
    log.info("worker stopped", **who, pending=pending, **delivery.tally().fields())
    if delivery.interrupted and pending:
        log.info("to resume, start `mailspool worker` again: what was not sent waits in the queue")
