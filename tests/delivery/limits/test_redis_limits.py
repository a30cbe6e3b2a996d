"""Cluster-wide limits held in Redis, seen from several limiter instances at once (each is
what one worker process holds): per-domain rates with a default, per-domain concurrency
slots that come back when their holder dies or closes. What every limits backend does is in
test_limits_contract.py; the three-process test at the SMTP sink is in
tests/e2e/test_redis_cluster.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest

from mailspool.config import load_settings
from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.limits.redis import RedisLimits
from mailspool.errors import ConfigError
from mailspool.wiring import check_shared_limits, limits
from tests.support.timing import assert_rate, max_in_window


def test_max_in_window() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 2.0, 4.0]) == 1


def test_assert_rate_takes_late_arrivals_and_refuses_a_faster_rate() -> None:
    turns = [k / 20 for k in range(60)]  # 20/s for three seconds
    assert_rate(turns, 20)
    # every fifth message a fifth of a second late (a descheduled process)
    assert_rate([t + (0.2 if k % 5 == 0 else 0.0) for k, t in enumerate(turns)], 20)
    for faster in ([k / 40 for k in range(60)], [0.0] * 60, [k / 20 for k in range(30)] * 2):
        with pytest.raises(AssertionError):
            assert_rate(faster, 20)


@pytest.fixture
async def make_limits(redis_url: str) -> AsyncIterator[Callable[..., RedisLimits]]:
    made: list[RedisLimits] = []

    def make(settings: LimitSettings, slot_ttl: float = 60.0) -> RedisLimits:
        lim = RedisLimits(redis_url, settings, slot_ttl=slot_ttl)
        made.append(lim)
        return lim

    yield make
    for lim in made:
        await lim.close()


async def test_per_domain_rates_hold_across_instances(
    make_limits: Callable[..., RedisLimits],
) -> None:
    settings = LimitSettings(domain_rates={"slow.example": 20.0}, default_domain_rate=40.0)
    workers = [make_limits(settings) for _ in range(3)]
    sent: dict[str, list[float]] = {"slow.example": [], "other.example": []}

    async def sender(lim: RedisLimits, domain: str, n: int) -> None:
        for _ in range(n):
            await lim.acquire(domain)
            sent[domain].append(time.monotonic())
            lim.release(domain)

    # three "processes", four senders each per domain, all as fast as the limits let them
    await asyncio.gather(
        *(sender(w, "slow.example", 2) for w in workers for _ in range(4)),
        *(sender(w, "other.example", 4) for w in workers for _ in range(4)),
    )
    assert len(sent["slow.example"]) == 24 and len(sent["other.example"]) == 48
    assert max_in_window(sent["slow.example"]) <= 22  # 20/s, +10%
    assert max_in_window(sent["other.example"]) <= 44  # the default, 40/s, +10%


async def test_a_dead_workers_slots_come_back_when_they_expire(
    make_limits: Callable[..., RedisLimits],
) -> None:
    settings = LimitSettings(domain_concurrency=2)
    dying = make_limits(settings, slot_ttl=0.3)
    await dying.acquire("example.com")
    await dying.acquire("example.com")
    assert dying._refresher is not None
    dying._refresher.cancel()  # it "dies": its slots are no longer kept alive
    other = make_limits(settings)
    with pytest.raises(TimeoutError):  # both slots are taken ...
        await asyncio.wait_for(other.acquire("example.com"), 0.1)
    await asyncio.wait_for(other.acquire("example.com"), 5)  # ... until they expire
    other.release("example.com")


async def test_close_hands_back_the_slots_it_holds(
    make_limits: Callable[..., RedisLimits],
) -> None:
    settings = LimitSettings(domain_concurrency=1)
    closing = make_limits(settings)  # slots expire after a minute
    await closing.acquire("example.com")
    await closing.close()
    other = make_limits(settings)
    await asyncio.wait_for(other.acquire("example.com"), 30)  # given back, not expired
    other.release("example.com")


async def test_a_held_slot_is_kept_alive_while_sending(
    make_limits: Callable[..., RedisLimits],
) -> None:
    settings = LimitSettings(domain_concurrency=1)
    holder = make_limits(settings, slot_ttl=0.3)
    await holder.acquire("example.com")
    await asyncio.sleep(0.5)  # longer than the slot's expiry: the holder refreshes it
    other = make_limits(settings)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(other.acquire("example.com"), 0.2)
    holder.release("example.com")
    await asyncio.wait_for(other.acquire("example.com"), 5)
    assert holder.lost_slots == 0


async def test_cancelled_while_waiting_for_the_rate_gives_the_slot_back(
    make_limits: Callable[..., RedisLimits],
) -> None:
    settings = LimitSettings(default_domain_rate=0.5, domain_concurrency=1)
    lim = make_limits(settings)
    await lim.acquire("example.com")  # the first send goes at once
    lim.release("example.com")
    waiting = asyncio.create_task(lim.acquire("example.com"))  # the next one waits 2 s
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    other = make_limits(LimitSettings(domain_concurrency=1))
    await asyncio.wait_for(other.acquire("example.com"), 5)  # the slot is free again


def test_wiring_picks_redis_limits_for_a_redis_queue_or_store() -> None:
    url = "redis://127.0.0.1:6379/0?prefix=x"
    assert isinstance(limits(load_settings(queue=url, rate="50/s")), RedisLimits)
    amqp = "amqp://guest:guest@127.0.0.1:5672/"
    assert isinstance(limits(load_settings(queue=amqp, store=url, rate="5/s")), RedisLimits)
    assert limits(load_settings(queue=url)) is None  # no limits set
    assert limits(load_settings(queue="sqlite:///q.db", rate="50/s")) is None


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_rabbitmq_workers_with_limits_and_no_redis_are_refused(command: str) -> None:
    """N workers each applying the rate on their own would send N times it: refused at
    start, before any connection, with what to do instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    res = subprocess.run(
        [sys.executable, "-m", "mailspool", command, "--queue", "amqp://guest:guest@127.0.0.1:1/",
         "--store", "postgresql://postgres@127.0.0.1:1/test", "--rate", "50/s"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "--limits-redis" in res.stderr
    assert "N times the rate" in res.stderr


def test_shared_limits_check_accepts_redis_or_no_limits() -> None:
    amqp = "amqp://guest:guest@127.0.0.1:5672/"
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    redis = "redis://127.0.0.1:6379/0"
    check_shared_limits(load_settings(queue=amqp, store=pg))  # no limits: fine
    check_shared_limits(load_settings(queue=amqp, store=pg, rate="5/s", limits_redis=redis))
    check_shared_limits(load_settings(queue=amqp, store=redis, rate="5/s"))
    check_shared_limits(load_settings(queue="sqlite:///q.db", rate="5/s"))  # one machine
    with pytest.raises(ConfigError, match="limits-redis"):
        check_shared_limits(load_settings(queue=amqp, store=pg, domain_concurrency=2))
