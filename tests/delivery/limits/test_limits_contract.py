"""One contract suite for the sending limits (mailspool.delivery.limits.base.Limits), run
unchanged against the limits of one process (LocalLimits) and those a cluster shares in
Redis (RedisLimits).

No test measures how fast anything goes. Rates are checked from below, which load cannot
break: a schedule's k-th send is reserved at least k intervals after the first request,
and no sender wakes before its reservation, so with ``t0`` read before the first request
the k-th admission is never before ``t0 + k / rate``. What must *not* wait is checked
against a limit minutes away (1/min), with generous timeouts; what must wait, with a
short timeout against the same minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import pytest

from mailspool.delivery.limits import (
    Limits,
    LimitSettings,
    LocalLimits,
    NoLimits,
    make_limits,
)
from mailspool.delivery.limits.redis import RedisLimits

BACKENDS = ["local", "redis"]
PER_MINUTE = 1 / 60  # a rate whose next turn is a minute away: far beyond any timeout here
EPS = 0.002  # float rounding, and the Redis server's clock against this one's
AT_ONCE = 30.0  # the bound on what must not wait: half the minute a wrong wait would take
BLOCKED = 0.3  # how long a send that must wait is given to show that it does

Holder = Callable[[LimitSettings], Limits]


@pytest.fixture(params=BACKENDS)
async def holder(request: pytest.FixtureRequest) -> AsyncIterator[Holder]:
    """``holder(settings)``: one more holder of a set of limits made fresh for the test
    (Redis: under a key prefix of its own). Every holder the test makes shares them: on
    Redis each is another instance (another worker process, as it were); locally each is
    the same object, as every sender of one process shares its limits."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    made: list[Limits] = []
    local: list[tuple[LimitSettings, LocalLimits]] = []

    def make(settings: LimitSettings) -> Limits:
        if request.param == "local":
            for known, lim in local:
                if known == settings:
                    return lim
            lim = LocalLimits.from_url(url, settings)
            local.append((settings, lim))
        else:
            lim = RedisLimits.from_url(url, settings)
        made.append(lim)
        return lim

    yield make
    for lim in made:
        await lim.close()


async def admissions(lim: Limits, domains: Iterable[str]) -> tuple[float, list[float]]:
    """Ask for every domain at once; returns the instant before the first request and
    the instants the senders were let go, in order."""
    times: list[float] = []

    async def send(domain: str) -> None:
        await lim.acquire(domain)
        times.append(time.monotonic())
        lim.release(domain)

    t0 = time.monotonic()
    await asyncio.gather(*(send(d) for d in domains))
    return t0, sorted(times)


def no_sooner_than_the_rate(t0: float, times: list[float], per_second: float) -> None:
    """The k-th send goes no sooner than k intervals after ``t0``."""
    for k, t in enumerate(sorted(times)):
        assert t - t0 >= k / per_second - EPS, (k, t - t0, [round(x - t0, 4) for x in times])


async def goes(lim: Limits, domain: str) -> float:
    """Acquire for ``domain``, which must not wait a turn."""
    return await asyncio.wait_for(lim.acquire(domain), AT_ONCE)


async def waits(lim: Limits, domain: str) -> None:
    """``domain`` must wait: its acquire is still waiting after BLOCKED seconds."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(lim.acquire(domain), BLOCKED)


# -- rates --------------------------------------------------------------------------------------


async def test_the_global_rate_spaces_every_send_whatever_its_domain(holder: Holder) -> None:
    lim = holder(LimitSettings(rate=20.0))
    t0, times = await admissions(lim, ["a.example", "b.example", "c.example"] * 4)
    assert len(times) == 12
    no_sooner_than_the_rate(t0, times, 20.0)


async def test_a_domain_rate_spaces_that_domains_sends(holder: Holder) -> None:
    settings = LimitSettings(domain_rates={"slow.example": 10.0}, default_domain_rate=20.0)
    lim = holder(settings)
    t0, times = await admissions(lim, ["slow.example"] * 6)
    no_sooner_than_the_rate(t0, times, 10.0)
    t0, times = await admissions(lim, ["other.example"] * 8)  # the default for the others
    no_sooner_than_the_rate(t0, times, 20.0)


async def test_a_send_waits_for_the_slower_of_the_global_and_its_domains_rate(
    holder: Holder,
) -> None:
    lim = holder(LimitSettings(rate=10.0, domain_rates={"slow.example": 4.0}))
    times: dict[str, list[float]] = {"slow.example": [], "other.example": []}

    async def send(domain: str) -> None:
        await lim.acquire(domain)
        times[domain].append(time.monotonic())

    t0 = time.monotonic()
    await asyncio.gather(*(send(d) for d in ["slow.example", "other.example"] * 3))
    no_sooner_than_the_rate(t0, times["slow.example"], 4.0)
    no_sooner_than_the_rate(t0, times["slow.example"] + times["other.example"], 10.0)


async def test_idle_time_is_not_saved_up_for_a_burst(holder: Holder) -> None:
    lim = holder(LimitSettings(rate=4.0))
    await goes(lim, "a.example")
    await asyncio.sleep(0.6)  # quiet for over two intervals
    t0, times = await admissions(lim, ["a.example"] * 3)
    no_sooner_than_the_rate(t0, times, 4.0)


async def test_each_domain_has_a_schedule_of_its_own(holder: Holder) -> None:
    lim = holder(LimitSettings(domain_rates={"a.example": PER_MINUTE, "b.example": PER_MINUTE}))
    await goes(lim, "a.example")
    await goes(lim, "b.example")  # not behind a.example's send
    await waits(lim, "a.example")
    await waits(lim, "b.example")


async def test_the_default_rate_applies_to_each_other_domain_apart(holder: Holder) -> None:
    settings = LimitSettings(domain_rates={"fast.example": 1000.0}, default_domain_rate=PER_MINUTE)
    lim = holder(settings)
    await goes(lim, "c.example")
    await goes(lim, "d.example")  # a schedule of its own, not one for all the others
    await waits(lim, "c.example")
    for _ in range(5):  # a domain's own rate, not the default
        await goes(lim, "fast.example")


async def test_without_a_default_other_domains_have_no_rate(holder: Holder) -> None:
    lim = holder(LimitSettings(domain_rates={"a.example": PER_MINUTE}))
    await goes(lim, "a.example")
    for _ in range(20):
        await goes(lim, "b.example")
    await waits(lim, "a.example")


async def test_the_global_rate_holds_across_domains(holder: Holder) -> None:
    lim = holder(LimitSettings(rate=PER_MINUTE))
    await goes(lim, "a.example")
    await waits(lim, "b.example")


async def test_with_nothing_set_nothing_waits(holder: Holder) -> None:
    lim = holder(LimitSettings())
    for i in range(50):
        assert await goes(lim, f"d{i % 3}.example") >= 0.0
        lim.release(f"d{i % 3}.example")


async def test_acquire_returns_the_seconds_it_waited(holder: Holder) -> None:
    lim = holder(LimitSettings(rate=4.0))
    calls: list[tuple[float, float]] = []

    async def send() -> None:
        started = time.monotonic()
        waited = await lim.acquire("a.example")
        calls.append((waited, time.monotonic() - started))

    await asyncio.gather(*(send() for _ in range(5)))
    # never more than the call took; and the last of five at 4/s waited for its turn
    assert all(0.0 <= waited <= took + EPS for waited, took in calls), calls
    assert max(waited for waited, _ in calls) > 0.0, calls


# -- per-domain concurrency ---------------------------------------------------------------------


async def test_concurrency_slots_are_shared(holder: Holder) -> None:
    settings = LimitSettings(domain_concurrency=2)
    workers = [holder(settings) for _ in range(3)]
    in_flight, peak = 0, 0

    async def sender(lim: Limits) -> None:
        nonlocal in_flight, peak
        for _ in range(3):
            await lim.acquire("example.com")
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            lim.release("example.com")

    await asyncio.gather(*(sender(w) for w in workers for _ in range(3)))
    assert peak == 2


async def test_a_domain_at_its_concurrency_waits_for_a_release(holder: Holder) -> None:
    lim = holder(LimitSettings(domain_concurrency=1))
    await goes(lim, "a.example")
    second = asyncio.create_task(lim.acquire("a.example"))
    done, _ = await asyncio.wait([second], timeout=BLOCKED)
    assert not done  # the one slot is taken ...
    await goes(lim, "b.example")  # ... a.example's: other domains have slots of their own
    lim.release("a.example")
    await asyncio.wait_for(second, AT_ONCE)  # ... until it is given back
    lim.release("a.example")
    lim.release("b.example")


async def test_a_release_with_no_slot_held_gives_nothing_away(holder: Holder) -> None:
    lim = holder(LimitSettings(domain_concurrency=1))
    lim.release("a.example")  # never acquired
    lim.release("b.example")
    await goes(lim, "a.example")
    await waits(lim, "a.example")  # still one slot, not two
    lim.release("a.example")


async def test_a_send_cancelled_while_waiting_for_the_rate_gives_its_slot_back(
    holder: Holder,
) -> None:
    # a stop cancels senders that wait for the rate; the slot each took must not leak
    lim = holder(LimitSettings(domain_concurrency=1, rate=5.0))
    await goes(lim, "a.example")
    lim.release("a.example")
    waiting = asyncio.create_task(lim.acquire("a.example"))  # the slot, then the rate
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # with the slot leaked this would wait for ever; the rate alone is a fraction of a second
    await asyncio.wait_for(lim.acquire("a.example"), AT_ONCE)
    lim.release("a.example")


# -- which limits ---------------------------------------------------------------------------


def test_make_limits_chooses_by_url_and_settings() -> None:
    assert isinstance(make_limits(None, LimitSettings()), NoLimits)
    assert isinstance(make_limits(None, LimitSettings(rate=5.0)), LocalLimits)
    assert isinstance(make_limits(None, LimitSettings(domain_concurrency=2)), LocalLimits)
    url = "redis://127.0.0.1:6379/0?prefix=x"
    assert isinstance(make_limits(url, LimitSettings(rate=5.0)), RedisLimits)  # not connected


async def test_no_limits_never_wait() -> None:
    lim = NoLimits.from_url("", LimitSettings(rate=1.0))
    assert [await lim.acquire("a.example") for _ in range(3)] == [0.0, 0.0, 0.0]
    lim.release("a.example")
    await lim.close()
