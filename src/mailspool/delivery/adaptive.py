"""The adapted rate of one provider: multiplicative decrease on a throttling reply,
additive increase after a quiet period (AIMD, as TCP does for congestion), and suspension.

Pure functions of the state, the provider's rules and the time (wall clock, so that
workers on several machines sharing it through Redis agree), so that the same arithmetic
runs on a worker's own copy and on the copy in Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mailspool.delivery.providers import Provider, Throttle

__all__ = ["Adapted", "climb", "cut"]


@dataclass(frozen=True, slots=True)
class Adapted:
    """``rate``: messages a second now (None: not limited); ``too_fast``: the rate the
    last cut was made from (the climb's step is a share of it); ``cut_at``: when it was
    last cut; ``step_at``: when it last climbed; ``suspended_until``; and the last
    throttling ``reply`` with its time ``reply_at``."""

    rate: float | None = None
    too_fast: float | None = None
    cut_at: float = -math.inf
    step_at: float = -math.inf
    suspended_until: float = 0.0
    reply: str = ""
    reply_at: float = 0.0

    @classmethod
    def start(cls, provider: Provider) -> Adapted:
        return cls(rate=provider.rate)

    def suspended(self, now: float) -> bool:
        return now < self.suspended_until


def cut(
    state: Adapted,
    provider: Provider,
    *,
    now: float,
    sent_at: float,
    seen: float,
    throttle: Throttle,
    reply: str,
) -> Adapted:
    """After a throttling ``reply`` to a message sent at ``sent_at``: the rate cut by the
    provider's ``decrease`` (from the rate now, or from ``seen``, the rate messages went
    at, when not limited yet), and the suspension the pattern asks for. Replies to
    messages sent before the last cut or within the provider's ``cooldown`` after it do
    not cut again: the provider still counts what came before (its window), and the new
    rate needs that long to show."""
    state = replace(state, reply=reply[:300], reply_at=now)
    if throttle.suspend:
        state = replace(state, suspended_until=max(state.suspended_until, now + throttle.suspend))
    if sent_at <= state.cut_at + provider.cooldown:
        return state  # sent at the old rate, or too soon to tell: that cut answered it
    base = state.rate if state.rate is not None else max(seen, provider.floor)
    return replace(
        state, rate=max(provider.floor, base * provider.decrease), too_fast=base, cut_at=now
    )


def climb(state: Adapted, provider: Provider, now: float) -> Adapted:
    """The rate after ``quiet`` seconds without a throttling reply: one step up per
    quiet period (``increase`` times the rate that was too fast), to the ceiling; a
    provider without one has its limit lifted once the rate is back to twice what was
    too fast (it is no longer what holds the mail back)."""
    if state.rate is None or (provider.rate is not None and state.rate >= provider.rate):
        return state
    if now - max(state.cut_at, state.step_at, state.reply_at) < provider.quiet:
        return state
    too_fast = state.too_fast or state.rate
    rate = state.rate + max(provider.increase * too_fast, provider.floor)
    if provider.rate is not None and rate >= provider.rate:
        return replace(state, rate=provider.rate, step_at=now)
    if provider.rate is None and rate >= 2 * too_fast:
        return replace(state, rate=None, too_fast=None, step_at=now)
    return replace(state, rate=rate, step_at=now)
