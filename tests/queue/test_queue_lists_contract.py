"""The queue contract for mailing lists and suppressed jobs, run against every backend (the
``queue`` fixture of tests/support/queues.py): a job's list is stored and read back; a
job enqueued suppressed, or recorded so, is final (never claimed, counted as
``suppressed``, untouched by the dead-letter commands); the suppression list is the
one kept beside the jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from mailspool.models import Enqueued, Job, Outcome, State
from mailspool.queue import QUEUES, STORES, DeadFilter, JobStore, Queue, Suppressing
from tests.support.jobs import make_job, suppressed
from tests.support.queues import classes


def on_list(job: Job, list_name: str) -> Job:
    return dataclasses.replace(job, list_name=list_name)


async def test_a_jobs_list_is_stored_and_read_back(queue: Queue) -> None:
    jobs = [on_list(make_job(1), "news"), make_job(2), on_list(make_job(3), "offers.eu")]
    assert await queue.enqueue(jobs) == [Enqueued.NEW] * 3
    lists = {"c1-00001": "news", "c1-00002": "", "c1-00003": "offers.eu"}
    for jid, name in lists.items():
        got = await queue.get(jid)
        assert got is not None and got.list_name == name
    claimed = await queue.claim("w", 10, 30)
    assert {j.id: j.list_name for j in claimed} == lists
    # and after an outcome (a dead letter) and a retry
    first = claimed[0]
    await queue.record("w", [Outcome(first.id, State.DEAD, "550 no", reason="rejected_permanent")])
    [letter] = await queue.dead_letters(DeadFilter())
    assert letter.list_name == lists[first.id]
    assert await queue.retry_dead(DeadFilter()) == 1
    [again] = await queue.claim("w", 10, 30)
    assert (again.id, again.list_name) == (first.id, lists[first.id])


async def test_a_job_enqueued_suppressed_is_final(queue: Queue) -> None:
    jobs = [suppressed(on_list(make_job(1), "news")), make_job(2), suppressed(make_job(3))]
    assert await queue.enqueue(jobs) == [Enqueued.SUPPRESSED, Enqueued.NEW, Enqueued.SUPPRESSED]
    st = await queue.stats("c1")
    assert (st.get(State.SUPPRESSED), st.get(State.QUEUED), st.pending) == (2, 1, 1)
    got = await queue.get("c1-00001")
    assert got is not None
    assert (got.state, got.list_name, got.attempts) == (State.SUPPRESSED, "news", 0)
    assert [j.id for j in await queue.claim("w", 10, 0.05)] == ["c1-00002"]
    await asyncio.sleep(0.1)  # even with every lease expired, only that job comes back
    assert [j.id for j in await queue.claim("w", 10, 30)] == ["c1-00002"]
    assert await queue.campaigns() == ["c1"]


async def test_a_campaign_of_suppressed_jobs_only_has_nothing_pending(queue: Queue) -> None:
    assert (
        await queue.enqueue([suppressed(make_job(i, campaign="quiet")) for i in range(3)])
        == [Enqueued.SUPPRESSED] * 3
    )
    st = await queue.stats("quiet")
    assert (st.get(State.SUPPRESSED), st.pending, st.next_due) == (3, 0, None)
    assert await queue.campaigns() == ["quiet"]
    assert await queue.claim("w", 10, 30) == []
    assert await queue.claim("w", 10, 30, campaign="quiet") == []


async def test_enqueue_again_finds_a_suppressed_job_final(queue: Queue) -> None:
    await queue.enqueue([suppressed(make_job(1))])
    # a re-run of the same row: still suppressed, whatever is offered now
    assert await queue.enqueue([make_job(1)]) == [Enqueued.SUPPRESSED]
    assert await queue.enqueue([suppressed(make_job(1))]) == [Enqueued.SUPPRESSED]
    # another row with the same key is a duplicate, as always
    assert await queue.enqueue([make_job(1, row=77)]) == [Enqueued.DUPLICATE]
    assert await queue.claim("w", 10, 30) == []
    # offered suppressed, a job queued by an earlier run stays queued (the worker checks)
    await queue.enqueue([make_job(2)])
    assert await queue.enqueue([suppressed(make_job(2))]) == [Enqueued.PENDING]
    assert [j.id for j in await queue.claim("w", 10, 30)] == ["c1-00002"]


async def test_the_same_key_twice_in_a_batch_is_a_duplicate_when_suppressed(
    queue: Queue,
) -> None:
    batch = [suppressed(make_job(1)), suppressed(make_job(1, row=50))]
    assert await queue.enqueue(batch) == [Enqueued.SUPPRESSED, Enqueued.DUPLICATE]
    assert (await queue.stats()).get(State.SUPPRESSED) == 1


async def test_an_outcome_suppressed_is_final_with_no_dead_reason(queue: Queue) -> None:
    await queue.enqueue([on_list(make_job(1), "news"), make_job(2)])
    a, b = await queue.claim("w", 10, 30)
    outcome = Outcome(a.id, State.SUPPRESSED, "every recipient suppressed", reason="ignored")
    assert await queue.record("w", [outcome]) == 1
    assert await queue.record("w", [outcome]) == 0  # the lease is gone
    got = await queue.get(a.id)
    assert got is not None
    assert (got.state, got.last_reply, got.dead_reason, got.lease_owner) == (
        State.SUPPRESSED,
        "every recipient suppressed",
        "",
        "",
    )
    assert got.list_name == a.list_name
    st = await queue.stats()
    assert (st.get(State.SUPPRESSED), st.get(State.SENDING), st.get(State.DEAD)) == (1, 1, 0)
    await queue.release("w", [b.id])
    assert [j.id for j in await queue.claim("w2", 10, 30)] == [b.id]
    assert await queue.enqueue([make_job(1)]) == [Enqueued.SUPPRESSED]
    assert await queue.dead_letters(DeadFilter()) == []


async def test_dead_letter_commands_leave_suppressed_jobs_alone(queue: Queue) -> None:
    await queue.enqueue([suppressed(make_job(1)), make_job(2), make_job(3)])
    two, three = sorted(await queue.claim("w", 10, 30), key=lambda j: j.id)
    await queue.record(
        "w",
        [
            Outcome(two.id, State.DEAD, "550 no", reason="rejected_permanent"),
            Outcome(three.id, State.SUPPRESSED, "suppressed before sending"),
        ],
    )
    assert [j.id for j in await queue.dead_letters(DeadFilter())] == [two.id]
    assert await queue.dead_letters(DeadFilter(ids=("c1-00001", three.id))) == []
    assert await queue.retry_dead(DeadFilter(ids=("c1-00001", three.id))) == 0
    assert await queue.purge_dead(DeadFilter(ids=("c1-00001", three.id))) == 0
    assert await queue.retry_dead(DeadFilter()) == 1
    assert await queue.purge_dead(DeadFilter()) == 0
    st = await queue.stats()
    assert (st.get(State.SUPPRESSED), st.get(State.QUEUED), st.total) == (2, 1, 3)
    assert [j.id for j in await queue.claim("w", 10, 30)] == [two.id]


async def test_a_deferred_outcome_then_suppressed(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w", 1, 30)
    await queue.record("w", [Outcome(job.id, State.DEFERRED, "451 later", time.time())])
    (again,) = await queue.claim("w", 1, 30)
    assert await queue.record("w", [Outcome(again.id, State.SUPPRESSED, "")]) == 1
    st = await queue.stats()
    assert (st.get(State.SUPPRESSED), st.pending, st.next_due) == (1, 0, None)


async def test_the_suppression_list_is_kept_beside_the_jobs(queue: Queue) -> None:
    from mailspool.queue.suppression import Reason, Suppression

    entry = Suppression("ann@example.com", "news", Reason.UNSUBSCRIBED, "test", time.time())
    assert isinstance(queue, Suppressing)
    await queue.suppressions.add([entry])
    assert queue.suppressions is queue.suppressions
    assert await queue.suppressions.suppressed(
        ["ann@example.com", "bob@example.com"], "news", time.time()
    ) == {"ann@example.com"}


@pytest.mark.parametrize("cls", [*classes(QUEUES), *classes(STORES)], ids=lambda c: str(c.__name__))
def test_every_backend_class_keeps_a_suppression_list(cls: Any) -> None:
    """Each backend overrides the interfaces' default, which keeps none."""
    base = Queue if issubclass(cls, Queue) else JobStore
    assert isinstance(cls.suppressions, property)
    assert cls.suppressions is not base.suppressions
