"""Sending limits: the interface and its settings (base.py), the limits of one process
(local.py) and limits shared by a cluster in Redis (redis.py), chosen by URL."""

from __future__ import annotations

from mailspool.delivery.limits.base import (
    Limits,
    LimitSettings,
    NoLimits,
    parse_domain_rates,
    parse_rate,
)
from mailspool.delivery.limits.local import LocalLimits, RateLimiter
from mailspool.urls import Plugins

__all__ = [
    "LIMITS",
    "LimitSettings",
    "Limits",
    "LocalLimits",
    "NoLimits",
    "RateLimiter",
    "make_limits",
    "parse_domain_rates",
    "parse_rate",
]

#: where limits shared by several processes live, by URL scheme
LIMITS: Plugins[Limits] = Plugins(
    "limits URL",
    {
        "redis": "mailspool.delivery.limits.redis:RedisLimits",
        "rediss": "mailspool.delivery.limits.redis:RedisLimits",
    },
    "shared limits live in Redis: give a redis:// or rediss:// URL",
)


def make_limits(url: str | None, settings: LimitSettings) -> Limits:
    """The limits held at ``url`` (shared by every process that uses it), or this
    process's own when ``url`` is None."""
    if url is None:
        return LocalLimits(settings) if settings.any else NoLimits()
    return LIMITS.for_url(url).from_url(url, settings)
