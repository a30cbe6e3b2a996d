"""How a worker delivers (its settings), and what it uses of a queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.retry import RetryPolicy
from mailspool.queue import Claiming, Suppressing


class ClaimingSuppressing(Claiming, Suppressing, Protocol):
    """What a worker uses of a queue: claims and outcomes, and the suppression list."""


@dataclass(kw_only=True)
class WorkerConfig:
    """How a worker delivers.

    ``concurrency``: senders (messages in flight); ``lease``: seconds a claimed job stays
    this worker's (the heartbeat extends it while the job is held); ``limits``: rate and
    per-domain limits when the worker holds its own; ``campaign``: claim only this
    campaign's jobs (None: any); ``retry``: the retry schedule for campaigns without
    their own; ``poll_interval``: the longest wait between claims when nothing is due;
    ``shutdown_grace``: seconds messages in flight get to finish once stopped.
    """

    concurrency: int = 8
    lease: float = 60.0
    limits: LimitSettings = field(default_factory=LimitSettings)
    campaign: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll_interval: float = 0.5
    shutdown_grace: float = 30.0

    @property
    def claim_batch(self) -> int:
        """How many jobs to claim at a time: enough to keep the senders busy, and with a
        rate, not far more than it lets go soon (the rest would sit leased, waiting)."""
        n = self.concurrency * 8
        if self.limits.rate:
            n = min(n, max(self.concurrency, int(2 * self.limits.rate)))
        return max(1, min(n, 1000))
