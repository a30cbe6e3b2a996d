"""Sending limits applied by the worker before each message: a global rate, per-domain
rates (with a default for other domains) and per-domain concurrency.

``LocalLimits`` holds them in this process. A cluster-wide implementation (shared by many
workers) provides the same two calls; the worker knows only the :class:`Limits` interface.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from mailspool.delivery.limits.local import RateLimiter, parse_rate
from mailspool.errors import ConfigError


@dataclass(frozen=True)
class LimitSettings:
    rate: float | None = None  # messages per second, all domains together
    domain_rates: dict[str, float] = field(default_factory=dict)
    default_domain_rate: float | None = None  # for domains not in domain_rates
    domain_concurrency: int = 0  # messages in flight per domain; 0: no limit

    @property
    def any(self) -> bool:
        return bool(
            self.rate or self.domain_rates or self.default_domain_rate or self.domain_concurrency
        )


def parse_domain_rates(items: list[str]) -> dict[str, float]:
    """``["gmail.com=20/s", "yahoo.com=500/m"]`` -> {domain: per second}."""
    out: dict[str, float] = {}
    for item in items:
        domain, sep, rate = item.partition("=")
        if not sep or not domain.strip():
            raise ConfigError(f"bad domain rate {item!r}: use DOMAIN=RATE, e.g. gmail.com=20/s")
        out[domain.strip().lower()] = parse_rate(rate)
    return out


class Limits(Protocol):
    async def acquire(self, domain: str) -> float:
        """Wait until a message to ``domain`` may go; returns the seconds waited."""
        ...

    def release(self, domain: str) -> None:
        """The message to ``domain`` is done (frees a per-domain concurrency slot)."""
        ...

    async def close(self) -> None:
        """Hand back whatever is held elsewhere (slots in Redis) and disconnect."""
        ...


class NoLimits:
    async def acquire(self, domain: str) -> float:
        return 0.0

    def release(self, domain: str) -> None:
        pass

    async def close(self) -> None:
        pass


class LocalLimits:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._global = RateLimiter(settings.rate) if settings.rate else None
        self._domains: dict[str, RateLimiter] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

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
        limiter = self._domain_limiter(domain)
        if limiter is not None:
            await limiter.acquire()
        if self._global is not None:
            await self._global.acquire()
        return time.monotonic() - started

    def release(self, domain: str) -> None:
        slot = self._slots.get(domain)
        if slot is not None:
            slot.release()

    async def close(self) -> None:
        pass
