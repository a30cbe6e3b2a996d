"""Sending limits applied by the worker before each message: a global rate, per-domain
rates (with a default for other domains) and per-domain concurrency.

``LocalLimits`` (local.py) holds them in this process; ``RedisLimits`` (redis.py) shares
them between every worker of a cluster. The worker knows only the :class:`Limits`
interface.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from mailspool.errors import ConfigError

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$", re.ASCII)


def parse_rate(text: str) -> float:
    """Messages per second from ``20/s``, ``500/m`` or ``10000/h``."""
    m = _RATE.match(text.lower())
    count = float(m.group(1)) if m else 0.0
    if not m or m.group(2) not in _UNITS or not 0 < count < math.inf:
        raise ConfigError(f"bad rate {text!r}: use a positive number per s, m or h, e.g. 20/s")
    return count / _UNITS[m.group(2)]


@dataclass(frozen=True)
class LimitSettings:
    """The limits to apply, from --rate, --domain-rate, --default-domain-rate and
    --domain-concurrency (rates in messages per second; None or 0: no limit)."""

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
    """What the worker asks before each message. An implementation is made from where
    it keeps its state (``from_url``) and the settings."""

    @classmethod
    def from_url(cls, url: str, settings: LimitSettings) -> Limits:
        """Limits kept at ``url`` (a Redis URL for the shared ones)."""
        ...

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
    """No limit at all: every acquire returns at once."""

    @classmethod
    def from_url(cls, url: str, settings: LimitSettings) -> NoLimits:
        return cls()

    async def acquire(self, domain: str) -> float:
        return 0.0

    def release(self, domain: str) -> None:
        pass

    async def close(self) -> None:
        pass
