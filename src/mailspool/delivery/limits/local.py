"""Limits held in this process: sends spaced in time (no burst above the rate, so no
window of the rate's period ever sees more than the limit), and per-domain slots."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from mailspool.delivery.limits.base import LimitSettings
from mailspool.errors import ConfigError


class RateLimiter:
    """Spaces acquisitions exactly ``1/rate`` seconds apart, with no burst after idling.

    A virtual schedule (GCRA-style): the n-th slot of a busy period that started at
    ``anchor`` is ``anchor + n / rate``, computed from the anchor each time rather than
    by adding the interval up, so rounding never accumulates into an extra send per
    window. When the schedule has fallen behind the clock (idle), a new period starts now.
    """

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < per_second < math.inf:
            raise ConfigError(
                f"a rate limit must be a positive number per second, not {per_second}"
            )
        self.per_second = per_second
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._anchor = -math.inf  # start of the current busy period
        self._n = 0  # slots handed out since the anchor
        self.waited = 0.0  # total seconds spent waiting, for metrics

    def reserve(self, now: float | None = None) -> float:
        """Reserve the next slot; returns how long to wait for it (0 if it is now)."""
        now = self._clock() if now is None else now
        if self._anchor + self._n / self.per_second <= now:
            self._anchor, self._n = now, 0  # idle: the schedule restarts from now
        wait = (self._anchor - now) + self._n / self.per_second
        self._n += 1
        return max(0.0, wait)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)


class LocalLimits:
    """The limits of one process: a RateLimiter for the global rate and one per domain,
    a semaphore per domain for its concurrency."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._global = RateLimiter(settings.rate) if settings.rate else None
        self._domains: dict[str, RateLimiter] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    @classmethod
    def from_url(cls, url: str, settings: LimitSettings) -> LocalLimits:
        """This process's limits (``url`` is not used: they are kept here)."""
        return cls(settings)

    def _domain_limiter(self, domain: str) -> RateLimiter | None:
        limiter = self._domains.get(domain)
        if limiter is None:
            rate = self.settings.domain_rates.get(domain, self.settings.default_domain_rate)
            if rate is None:
                return None
            limiter = self._domains[domain] = RateLimiter(rate)
        return limiter

    async def acquire(self, domain: str) -> float:
        started = time.monotonic()
        if self.settings.domain_concurrency:
            slot = self._slots.get(domain)
            if slot is None:
                slot = self._slots[domain] = asyncio.Semaphore(self.settings.domain_concurrency)
            await slot.acquire()
        try:
            limiter = self._domain_limiter(domain)
            if limiter is not None:
                await limiter.acquire()
            if self._global is not None:
                await self._global.acquire()
        except BaseException:
            # cancelled while waiting for the rate (a stop): the slot is not ours to keep
            self.release(domain)
            raise
        return time.monotonic() - started

    def release(self, domain: str) -> None:
        slot = self._slots.get(domain)
        if slot is not None:
            slot.release()

    async def close(self) -> None:
        pass
