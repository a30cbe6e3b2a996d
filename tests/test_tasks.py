"""cancel_and_wait: cancelled tasks end even when a cancellation is lost."""

from __future__ import annotations

import asyncio

from mailspool.tasks import cancel_and_wait
from tests.support.services import redis_url  # noqa: F401 (fixture)


async def _swallows_once(ran: list[int]) -> None:
    """A loop that loses its first cancellation, as a library may (redis-py 8 does)."""
    lost = False
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        ran.append(1)


async def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    ran: list[int] = []
    task = asyncio.create_task(_swallows_once(ran))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(cancel_and_wait([task]), timeout=5)
    assert task.cancelled()
    assert ran  # it did go on after the first cancellation


async def test_an_ended_task_s_exception_is_retrieved_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed, done = asyncio.create_task(fails()), asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait([failed, done])  # no error, no "never retrieved" warning
    assert isinstance(failed.exception(), RuntimeError)


async def test_loops_over_real_redis_commands_all_end(redis_url: str) -> None:  # noqa: F811
    """The case that hung ``worker --drain``: a refresher reading Redis, cancelled at
    random moments, sometimes went on; each must end."""
    import random

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url.split("?", maxsplit=1)[0])

    async def refresher() -> None:
        while True:
            await client.hgetall("mailspool-test-none")
            await asyncio.sleep(0.2)

    try:
        for _ in range(300):  # one in about 40 lost its cancellation before
            task = asyncio.create_task(refresher())
            await asyncio.sleep(random.random() * 0.003)
            await asyncio.wait_for(cancel_and_wait([task]), timeout=5)
            assert task.done()
    finally:
        await client.aclose()
