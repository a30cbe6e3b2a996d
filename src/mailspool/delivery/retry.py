"""The retry schedule: exponential backoff with jitter, a cap, a maximum age and a
maximum number of attempts. Pure logic."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mailspool.errors import ConfigError
from mailspool.models import DeadReason, Job
from mailspool.queue import Claiming


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a job that failed is tried again, and when it is given up.

    The delay after the n-th failed attempt is ``first`` seconds times ``factor`` to the
    power n-1, capped at ``max_delay``, then spread by +/- ``jitter`` (a fraction) so that
    jobs that failed together do not come back together. A job is dead once it is
    ``max_age`` seconds old (``expired``) or after ``max_attempts`` attempts (0: no limit).
    A campaign enqueued with retry options has its own policy (the worker applies it).
    """

    first: float = 300.0  # 5 minutes
    factor: float = 2.0
    max_delay: float = 3600.0  # about an hour, before jitter
    max_age: float = 5 * 86400.0  # then the job is dead: expired
    max_attempts: int = 0  # 0: limited by max_age only
    jitter: float = 0.2  # +/- this fraction of the delay

    def __post_init__(self) -> None:
        checks = (
            (self.first > 0, "the first retry delay must be positive"),
            (self.factor >= 1, "the backoff factor must be at least 1"),
            (self.max_delay > 0, "the maximum retry delay must be positive"),
            (self.max_age > 0, "the maximum age must be positive"),
            (self.max_attempts >= 0, "max_attempts must be 0 (no limit) or more"),
            (0 <= self.jitter < 1, "jitter must be a fraction in [0, 1)"),
        )
        for ok, problem in checks:
            if not ok:
                raise ConfigError(problem)

    def base_delay(self, attempts: int) -> float:
        """The delay before jitter after the ``attempts``-th failed attempt (1-based)."""
        try:
            grown = self.first * self.factor ** max(0, attempts - 1)
        except OverflowError:  # a huge attempt count: the cap applies anyway
            grown = math.inf
        return min(self.max_delay, grown)

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based): the base
        delay, times ``factor`` per attempt, capped at ``max_delay``, +/- ``jitter``."""
        base = self.base_delay(attempts)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def next_attempt(
        self, attempts: int, created_at: float, now: float, rng: random.Random | None = None
    ) -> float | DeadReason:
        """When to try again (a time like ``now``), or why to give up.

        A job is retried until it is ``max_age`` old: a retry that would fall after that
        is moved to the deadline itself, so the last attempt happens at ``max_age``; a
        failure at or after the deadline is final (``expired``).
        """
        if self.max_attempts and attempts >= self.max_attempts:
            return DeadReason.MAX_ATTEMPTS
        deadline = created_at + self.max_age
        if now >= deadline:
            return DeadReason.EXPIRED
        return min(deadline, now + self.delay(attempts, rng))


class CampaignPolicies:
    """The retry schedule of each campaign: its own when it was enqueued with one (read
    from ``settings`` once per campaign), else ``default``."""

    def __init__(self, settings: Claiming, default: RetryPolicy) -> None:
        self.settings = settings
        self.default = default
        self._known: dict[str, RetryPolicy] = {}

    async def load(self, campaigns: Iterable[str]) -> None:
        """Read the schedules of campaigns not seen yet (once per campaign)."""
        for campaign in set(campaigns) - self._known.keys():
            override = (await self.settings.campaign_settings(campaign)).get("retry")
            self._known[campaign] = (
                dataclasses.replace(self.default, **override) if override else self.default
            )

    def next_attempt(self, job: Job, now: float | None = None) -> float | DeadReason:
        """When to try ``job`` again after this attempt, or why to give up (see
        :meth:`RetryPolicy.next_attempt`)."""
        policy = self._known.get(job.campaign, self.default)
        return policy.next_attempt(
            job.attempts, job.created_at, time.time() if now is None else now
        )
