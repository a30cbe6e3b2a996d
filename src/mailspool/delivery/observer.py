"""Observers: progress, logs and metrics hook in beside the worker loop."""

from __future__ import annotations

from collections.abc import Sequence

from mailspool.delivery.classify import Verdict
from mailspool.errors import DeliveryError
from mailspool.models import DeadReason, Job, Outcome
from mailspool.transport.base import Delivery


class Observer:
    """Called by the worker; every method is optional. Must not block."""

    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        pass

    def deferred(
        self, job: Job, err: DeliveryError, verdict: Verdict, not_before: float, elapsed: float
    ) -> None:
        pass

    def dead(self, job: Job, reason: DeadReason, reply: str) -> None:
        pass

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        pass

    def prepared(self, seconds: float) -> None:
        """Seconds spent building this attempt's message bytes (attachments wrapped in)."""

    def rate_limited(self, waited: float) -> None:
        """Seconds a send waited on rate or concurrency limits (0 when it did not)."""

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        """Outcomes are durable in the job store."""


class Counter(Observer):
    """Counts outcomes recorded by this process."""

    def __init__(self) -> None:
        self.sent_count = 0
        self.deferred_count = 0
        self.dead_count = 0
        self.ambiguous = 0
        self.relay_pauses = 0

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        self.relay_pauses += 1

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o.state.value == "sent":
                self.sent_count += 1
            elif o.state.value == "dead":
                self.dead_count += 1
            else:
                self.deferred_count += 1
            self.ambiguous += o.ambiguous
