"""The retry schedule: exponential backoff with jitter, a cap, a maximum age and a
maximum number of attempts. Pure logic."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailspool.models import DeadReason


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first: float = 300.0
    factor: float = 2.0
    max_delay: float = 3600.0
    max_age: float = 5 * 86400.0
    max_attempts: int = 0  # 0: limited by max_age only
    jitter: float = 0.2  # +/- this fraction of the delay

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        base = min(self.max_delay, self.first * self.factor ** max(0, attempts - 1))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def next_attempt(
        self, attempts: int, created_at: float, now: float, rng: random.Random | None = None
    ) -> float | DeadReason:
        """When to try again, or why to give up."""
        if self.max_attempts and attempts >= self.max_attempts:
            return DeadReason.MAX_ATTEMPTS
        when = now + self.delay(attempts, rng)
        if when - created_at > self.max_age:
            return DeadReason.EXPIRED
        return when
