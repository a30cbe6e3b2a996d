"""The RabbitMQ queue's job stores beyond the queue contract (which, like
test_rabbitmq_queue.py, runs the RabbitMQ queue over each store).

Each test of a store runs against both, PostgreSQL and Redis, with the same expectations:
the Redis store mirrors the PostgreSQL one call for call (dead letters listed, retried
and purged by every filter, an idempotent insert from two producers at once, leases held
by their owner only, stats)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import Enqueued, Job, Outcome, State
from mailspool.queue import DeadFilter, JobStore, RedisJobStore, Ref, make_queue, make_store
from tests.support.jobs import make_job
from tests.support.services import RabbitMQNamespace


@pytest.fixture(params=["postgresql", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A store URL of each kind, in a namespace of this test's own (deleted afterwards)."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    ns: RabbitMQNamespace = request.getfixturevalue("rabbitmq")
    return ns.store


@pytest.fixture
async def open_store(store_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Open stores on the URL (as many processes would); all are closed afterwards."""
    opened: list[JobStore] = []

    async def open_() -> JobStore:
        s = make_store(store_url)
        await s.open()
        opened.append(s)
        return s

    yield open_
    for s in opened:
        await s.close()


@pytest.fixture
async def store(open_store: Callable[[], Any]) -> JobStore:
    s: JobStore = await open_store()
    return s


async def dead(store: JobStore, jobs: list[Job], reason: str, reply: str = "550 no") -> None:
    """Claim ``jobs`` and record them dead (each batch a moment after the last)."""
    await asyncio.sleep(0.01)  # distinct times of death between batches
    claimed = await store.claim_ids("w", [j.id for j in jobs], 30, None)
    assert len(claimed) == len(jobs)
    outcomes = [Outcome(j.id, State.DEAD, reply, reason=reason) for j in jobs]
    assert await store.record("w", outcomes) == len(jobs)


def ids(found: list[Job] | list[Ref]) -> list[str]:
    return [j.id for j in found]


# -- dead letters -------------------------------------------------------------------------------


async def test_dead_letters_are_listed_by_every_filter_oldest_first(store: JobStore) -> None:
    a = [make_job(i, campaign="a") for i in range(4)]
    b = [make_job(i, campaign="b") for i in range(2)]
    await store.insert(a + b)
    for j in a[:2]:
        await dead(store, [j], "rejected_permanent")
    since = time.time()
    await dead(store, [b[0]], "rejected_permanent")
    await dead(store, [a[2]], "too_large")
    everything = await store.dead_letters(DeadFilter(), 100)
    assert ids(everything) == [*ids(a[:2]), b[0].id, a[2].id]
    assert ids(await store.dead_letters(DeadFilter(), 2)) == ids(everything)[:2]
    assert ids(await store.dead_letters(DeadFilter(campaign="b"), 100)) == [b[0].id]
    perm = await store.dead_letters(DeadFilter(reason="rejected_permanent"), 100)
    assert ids(perm) == [*ids(a[:2]), b[0].id]
    assert ids(await store.dead_letters(DeadFilter(since=since), 100)) == [b[0].id, a[2].id]
    # ids: only those dead (a[3] is queued, "nope" does not exist) and matching the rest
    flt = DeadFilter(campaign="a", ids=(a[0].id, a[2].id, a[3].id, "nope"))
    assert ids(await store.dead_letters(flt, 100)) == [a[0].id, a[2].id]
    flt = DeadFilter(campaign="a", reason="too_large", since=since)
    (letter,) = await store.dead_letters(flt, 100)
    assert (letter.id, letter.state, letter.dead_reason) == (a[2].id, State.DEAD, "too_large")
    assert letter.last_reply == "550 no" and letter.message == a[2].message


async def test_retry_dead_queues_the_matching_letters_again(store: JobStore) -> None:
    jobs = [make_job(i) for i in range(4)]
    await store.insert(jobs)
    await dead(store, jobs[:3], "rejected_permanent", "550 unknown user")
    await dead(store, [jobs[3]], "too_large")
    refs = await store.retry_dead(DeadFilter(reason="rejected_permanent", ids=ids(jobs[1:])))
    assert sorted(refs, key=lambda r: r.id) == [Ref(j.id, "c1") for j in jobs[1:3]]
    assert sorted(ids(await store.queued([*ids(jobs), "nope"]))) == ids(jobs[1:3])
    again = await store.get(jobs[1].id)
    assert again is not None and again.state is State.QUEUED
    assert (again.attempts, again.dead_reason) == (0, "")
    assert (again.message_id, again.last_reply) == (jobs[1].message_id, "550 unknown user")
    st = await store.stats("c1")
    assert (st.get(State.DEAD), st.get(State.QUEUED)) == (2, 2)
    assert await store.retry_dead(DeadFilter(campaign="other")) == []
    claimed = await store.claim_due("w2", 10, 30, "c1", (State.QUEUED,))
    assert sorted(ids(claimed)) == ids(jobs[1:3]) and all(j.attempts == 1 for j in claimed)


async def test_purge_dead_by_filter_and_a_campaign_purged_whole(store: JobStore) -> None:
    a = [make_job(i, campaign="a") for i in range(3)]
    b = [make_job(i, campaign="b") for i in range(2)]
    await store.insert(a + b)
    await dead(store, [a[0]], "expired")
    since = time.time()
    await dead(store, a[1:], "expired")
    (lost,) = await store.claim_ids("w", [b[0].id], 0.01, None)  # an ambiguous death
    await asyncio.sleep(0.05)
    await store.claim_ids("w2", [lost.id], 30, None)
    await store.record("w2", [Outcome(lost.id, State.DEAD, "550", reason="expired")])
    await dead(store, [b[1]], "too_large")
    assert (await store.stats("b")).ambiguous == 1
    assert await store.purge_dead(DeadFilter(campaign="a", since=since)) == 2
    assert ids(await store.dead_letters(DeadFilter(campaign="a"), 100)) == [a[0].id]
    assert await store.purge_dead(DeadFilter(reason="too_large", ids=(b[0].id,))) == 0
    assert await store.purge_dead(DeadFilter(campaign="b")) == 2
    assert await store.get(b[0].id) is None
    # every job of b is gone, so is b; its ambiguous delivery went with its job
    assert await store.campaigns() == ["a"]
    assert (await store.exists("a"), await store.exists("b")) == (True, False)
    st = await store.stats(None)
    assert (st.counts, st.ambiguous) == ({"dead": 1}, 0)


# -- producers and leases -----------------------------------------------------------------------


async def test_two_producers_enqueue_each_job_once(open_store: Callable[[], Any]) -> None:
    one, two = await open_store(), await open_store()
    jobs = [make_job(i) for i in range(1200)]  # more than one batch of the Redis store
    later = make_job(5000)
    later.not_before = time.time() + 600
    (r1, due1), (r2, due2) = await asyncio.gather(
        one.insert([*jobs, later]), two.insert([*jobs, later])
    )
    # each job is new for exactly one producer, pending (the same row) for the other
    assert all({x, y} == {Enqueued.NEW, Enqueued.PENDING} for x, y in zip(r1, r2, strict=True))
    # only the producer that added a job announces it; a job due later is not announced
    assert sorted(ids(due1 + due2)) == sorted(ids(jobs))
    st = await one.stats("c1")
    assert (st.get(State.QUEUED), st.get(State.DEFERRED)) == (1200, 1)
    # the same id twice in one call (across batches): the second is a duplicate
    dup = make_job(7000)
    result, _ = await one.insert([dup, *[make_job(i, campaign="x") for i in range(600)], dup])
    assert (result[0], result[-1]) == (Enqueued.NEW, Enqueued.DUPLICATE)
    (job,) = await two.claim_ids("w", [jobs[0].id], 30, None)
    await two.record("w", [Outcome(job.id, State.SENT, "250 ok")])
    resumed, due = await one.insert([jobs[0], make_job(1, row=99)])
    assert (resumed, due) == ([Enqueued.SENT, Enqueued.DUPLICATE], [])


async def test_leases_belong_to_their_owner(store: JobStore) -> None:
    await store.insert([make_job(i, campaign="a") for i in range(3)] + [make_job(0, campaign="b")])
    later = make_job(9, campaign="a")
    later.not_before = time.time() + 600
    await store.insert([later])
    all_ids = [make_job(i, campaign="a").id for i in range(3)] + [
        later.id,
        make_job(0, campaign="b").id,
    ]
    # not due yet, another campaign, a duplicate id: not claimed
    got = await store.claim_ids("w1", [*all_ids, all_ids[0]], 30, "a")
    assert sorted(ids(got)) == sorted(all_ids[:3])
    assert all(j.state is State.SENDING and j.lease_owner == "w1" for j in got)
    assert ids(await store.claim_ids("w2", all_ids, 30, None)) == all_ids[-1:]  # b's
    assert await store.lease_owners("a") == ["w1"]
    assert await store.lease_owners(None) == ["w1", "w2"]
    # only the owner records, extends and hands back
    assert await store.record("w2", [Outcome(all_ids[0], State.SENT, "250")]) == 0
    assert await store.release("w2", all_ids[:3], None) == []
    await store.extend("w2", all_ids[:3], 0.01)
    await asyncio.sleep(0.05)
    assert await store.claim_due("w3", 10, 30, "a", (State.SENDING,)) == []
    assert await store.record("w1", [Outcome(all_ids[0], State.SENT, "250")]) == 1
    refs = await store.release("w1", all_ids[1:2], None)
    assert refs == [Ref(all_ids[1], "a")]
    assert await store.release_owner("w1") == [Ref(all_ids[2], "a")]
    st = await store.stats("a")
    assert (st.get(State.SENT), st.get(State.QUEUED), st.ambiguous) == (1, 2, 1)
    assert await store.lease_owners("a") == []


async def test_claim_due_takes_the_oldest_due_first(store: JobStore) -> None:
    now = time.time()
    jobs = [make_job(0, campaign="b"), make_job(1, campaign="a"), make_job(2, campaign="b")]
    for j, ago in zip(jobs, (30, 10, 20), strict=True):
        j.not_before = now - ago
    await store.insert(jobs)
    assert await store.has_due(None, (State.QUEUED,))
    assert not await store.has_due(None, (State.DEFERRED, State.SENDING))
    first = await store.claim_due("w", 2, 30, None, (State.QUEUED,))
    assert sorted(ids(first)) == sorted([jobs[0].id, jobs[2].id])
    assert ids(await store.claim_due("w", 5, 30, "b", (State.QUEUED,))) == []
    assert not await store.has_due("b", (State.QUEUED,))
    assert ids(await store.claim_due("w", 5, 30, None, (State.QUEUED,))) == [jobs[1].id]


async def test_stats_count_states_ambiguity_next_due_and_last_error(store: JobStore) -> None:
    await store.insert([make_job(i, campaign="a") for i in range(4)] + [make_job(0, campaign="b")])
    ja = [make_job(i, campaign="a").id for i in range(4)]
    await store.claim_ids("w", ja, 30, None)
    now = time.time()
    await store.record(
        "w",
        [
            Outcome(ja[0], State.SENT, "250 ok", ambiguous=True),
            Outcome(ja[1], State.DEFERRED, "451 first", not_before=now + 100),
            Outcome(ja[2], State.DEFERRED, "451 later", not_before=now + 200),
        ],
    )
    # a hand-back without a reply due last: the last error is still the latest reply
    await store.release("w", [ja[3]], now + 300)
    st = await store.stats("a")
    assert st.counts == {"sent": 1, "deferred": 3}
    assert (st.ambiguous, st.last_error) == (1, "451 later")
    assert st.next_due == pytest.approx(now + 100, abs=0.01)
    everything = await store.stats(None)
    assert everything.counts == {"sent": 1, "deferred": 3, "queued": 1}
    assert everything.next_due is not None and everything.next_due <= now
    assert len(await store.claim_due("w", 1, 50, "b", (State.QUEUED,))) == 1
    st = await store.stats("b")  # a lease counts as due when it expires
    assert (st.counts, st.next_due) == ({"sending": 1}, pytest.approx(now + 50, abs=1))
    assert st.last_error == "" and (await store.stats("none")).counts == {}


# -- choosing the store -------------------------------------------------------------------------


def test_redis_store_urls() -> None:
    assert isinstance(make_store("rediss://:pw@h:6380/1?prefix=a"), RedisJobStore)
    assert "pw" not in make_store("redis://:pw@h:6379/0").url
    with pytest.raises(ConfigError, match="prefix"):
        make_store("redis://h:6379/0?prefix=a b")
    with pytest.raises(ConfigError, match=r"postgresql://.* or redis://"):
        make_queue("amqp://h/", "mysql://h/db")


async def test_a_redis_store_that_cannot_open_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailspool.testing import free_port

    store = make_store(f"redis://:secret@127.0.0.1:{free_port()}/0?reconnect_for=0.2")
    with pytest.raises(QueueError, match="unreachable") as err:
        await store.open()
    assert "secret" not in str(err.value)
    with pytest.raises(QueueError, match="not open"):
        await store.stats(None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtra, match=r"mailspool\[redis\]"):
        await make_store("redis://127.0.0.1:6379/0").open()
