"""The observer interface: progress, logs, metrics and tracing hook in beside the worker
loop (their observers live in mailspool.observe, which exports this interface too)."""

from __future__ import annotations

from collections.abc import Sequence

from mailspool.delivery.classify import Verdict
from mailspool.errors import DeliveryError
from mailspool.models import DeadReason, Job, Outcome, State
from mailspool.transport.base import Delivery


class Observer:
    """What a worker tells about its work: subclass it and override what you need (every
    method does nothing by default), then give it to the Worker (``observers=``). The
    worker calls these methods from its event loop: they must not block, and an observer
    that raises is logged and skipped, never stops delivery."""

    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        """The relay took ``job`` (``delivery``: its reply) after ``elapsed`` seconds."""

    def deferred(
        self, job: Job, err: DeliveryError, verdict: Verdict, not_before: float, elapsed: float
    ) -> None:
        """An attempt failed with ``err`` (``verdict``: what it means); the job is due
        again at ``not_before`` (a time.time())."""

    def dead(self, job: Job, reason: DeadReason, reply: str) -> None:
        """The job is given up: dead-lettered for ``reason``."""

    def suppressed(self, job: Job) -> None:
        """Every recipient of ``job`` is on the suppression list: it is not sent, and is
        recorded SUPPRESSED (final)."""

    def cancelled(self, job: Job) -> None:
        """The campaign of ``job`` was cancelled before it was sent: it is not sent, and
        is recorded CANCELLED (final)."""

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        """``err`` closed the relay gate: no sender uses the relay for ``delay`` seconds."""

    def throttled(self, job: Job, provider: str, err: DeliveryError) -> None:
        """``provider`` answered ``job`` with a throttling reply: its rate is cut and the
        job admitted again (no attempt charged)."""

    def prepared(self, seconds: float) -> None:
        """Seconds spent building this attempt's message bytes (attachments wrapped in)."""

    def rate_limited(self, waited: float) -> None:
        """Seconds a send waited on rate or concurrency limits (0 when it did not)."""

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        """Outcomes are durable in the job store."""


class Counter(Observer):
    """Counts the outcomes this process recorded (sent, deferred, dead, suppressed,
    cancelled; how many of them ambiguous) and the relay pauses: what ``send`` and
    ``worker`` report at their end."""

    def __init__(self) -> None:
        self.sent_count = 0
        self.deferred_count = 0
        self.dead_count = 0
        self.suppressed_count = 0
        self.cancelled_count = 0
        self.ambiguous = 0
        self.relay_pauses = 0

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        self.relay_pauses += 1

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o.state is State.SENT:
                self.sent_count += 1
            elif o.state is State.DEAD:
                self.dead_count += 1
            elif o.state is State.SUPPRESSED:
                self.suppressed_count += 1
            elif o.state is State.CANCELLED:
                self.cancelled_count += 1
            else:
                self.deferred_count += 1
            self.ambiguous += o.ambiguous
