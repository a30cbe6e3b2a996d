"""Campaign control (pause, resume, cancel), one contract run unchanged against every
backend through the queue fixture (tests/support/queues.py): memory, SQLite, Redis,
RabbitMQ with its PostgreSQL store and with its Redis store."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from mailspool.models import CampaignState, Enqueued, Outcome, State
from mailspool.queue import Queue
from tests.support.jobs import claim_n, make_job

PAUSED, ACTIVE, CANCELLED = CampaignState.PAUSED, CampaignState.ACTIVE, CampaignState.CANCELLED


async def claim_all(queue: Queue, owner: str, campaign: str | None = None) -> list[str]:
    """Every job a claim hands ``owner`` now (claims until one comes back empty)."""
    ids: list[str] = []
    while batch := await queue.claim(owner, 50, 60, campaign):
        ids += [j.id for j in batch]
    return sorted(ids)


async def test_a_paused_campaign_is_claimed_by_no_one_until_resumed(queue: Queue) -> None:
    await queue.enqueue([make_job(i, campaign="a") for i in range(3)])
    await queue.enqueue([make_job(i, campaign="b") for i in range(2)])
    change = await queue.set_campaign_state("a", PAUSED)
    assert change.state is PAUSED and change.cancelled == 0
    assert await claim_all(queue, "w1") == ["b-00000", "b-00001"]
    assert await claim_all(queue, "w2", "a") == []
    st = await queue.stats("a")
    assert st.get(State.QUEUED) == 3 and st.pending == 3  # still queued, only held back
    assert (await queue.set_campaign_state("a", ACTIVE)).state is ACTIVE
    assert await claim_all(queue, "w3") == ["a-00000", "a-00001", "a-00002"]


async def test_pause_and_resume_are_idempotent_and_keep_the_settings(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="a"), make_job(1, campaign="b")])
    await queue.set_campaign_settings("a", {"retry": {"first": 10.0}})
    assert await queue.campaign_states() == {}
    for _ in range(2):
        assert (await queue.set_campaign_state("a", PAUSED)).state is PAUSED
    assert await queue.campaign_states() == {"a": PAUSED}
    assert await queue.campaign_states(["a", "b", "unknown"]) == {"a": PAUSED}
    # settings stored again (a re-run of enqueue) leave the state as it is, and back
    await queue.set_campaign_settings("a", {"retry": {"first": 20.0}})
    assert await queue.campaign_states(["a"]) == {"a": PAUSED}
    assert await queue.campaign_settings("a") == {"retry": {"first": 20.0}}
    for _ in range(2):
        assert (await queue.set_campaign_state("a", ACTIVE)).state is ACTIVE
    assert await queue.campaign_states() == {}
    assert await queue.campaign_settings("a") == {"retry": {"first": 20.0}}
    # a campaign with no settings has none after a pause either
    await queue.set_campaign_state("b", PAUSED)
    assert await queue.campaign_settings("b") == {}


async def test_cancel_ends_the_queued_and_deferred_jobs_at_once(queue: Queue) -> None:
    later = time.time() + 3600
    await queue.enqueue([make_job(i, campaign="a") for i in range(4)])
    await queue.enqueue([replace(make_job(9, campaign="a"), not_before=later)])  # deferred
    await queue.enqueue([make_job(1, campaign="b")])
    first, second = await claim_n(queue, "w", 2, campaign="a")
    assert await queue.record("w", [Outcome(first.id, State.SENT, "250 ok")]) == 1
    change = await queue.set_campaign_state("a", CANCELLED)
    assert change.state is CANCELLED and change.cancelled == 3  # 2 queued, 1 deferred
    st = await queue.stats("a")
    assert st.get(State.CANCELLED) == 3 and st.get(State.SENT) == 1
    assert st.get(State.SENDING) == 1 and st.pending == 1  # held by a worker: its own to end
    assert await claim_all(queue, "w2", "a") == []
    assert (await queue.stats("b")).get(State.QUEUED) == 1  # another campaign: untouched
    # the worker holding one records it cancelled instead of sending it
    assert await queue.record("w", [Outcome(second.id, State.CANCELLED, "campaign cancelled")])
    st = await queue.stats("a")
    assert st.get(State.CANCELLED) == 4 and st.pending == 0 and st.total == 5
    job = await queue.get(second.id)
    assert job is not None and job.state is State.CANCELLED
    assert (await queue.stats()).get(State.CANCELLED) == 4
    # again: nothing left to cancel
    assert await queue.set_campaign_state("a", CANCELLED) == change.__class__(CANCELLED, 0)


async def test_a_cancelled_campaign_stays_cancelled(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="a")])
    await queue.set_campaign_state("a", PAUSED)
    assert (await queue.set_campaign_state("a", CANCELLED)).cancelled == 1
    for state in (PAUSED, ACTIVE):
        change = await queue.set_campaign_state("a", state)
        assert change.state is CANCELLED and change.cancelled == 0
    assert await queue.campaign_states() == {"a": CANCELLED}
    # offered again (a re-run): final, not pending
    assert await queue.enqueue([make_job(1, campaign="a")]) == [Enqueued.CANCELLED]


async def test_a_job_queued_after_the_cancel_is_claimed_for_its_worker_to_end(
    queue: Queue,
) -> None:
    """The cancel ends what is queued; a job queued to the campaign later (a dead letter
    retried, a message posted to it) is handed to a worker, which checks its campaign."""
    await queue.set_campaign_state("a", CANCELLED)
    await queue.enqueue([make_job(1, campaign="a")])
    assert await claim_all(queue, "w", "a") == ["a-00001"]
    assert await queue.record("w", [Outcome("a-00001", State.CANCELLED, "campaign cancelled")])
    assert (await queue.stats("a")).get(State.CANCELLED) == 1


async def test_an_expired_lease_of_a_paused_campaign_waits_for_the_resume(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="a")])
    assert len(await queue.claim("w1", 1, 0.05, "a")) == 1
    await queue.set_campaign_state("a", PAUSED)
    await asyncio.sleep(0.1)
    assert await claim_all(queue, "w2") == []
    await queue.set_campaign_state("a", ACTIVE)
    assert await claim_all(queue, "w2") == ["a-00001"]


async def test_a_cancelled_job_writes_no_event(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="a"), make_job(2, campaign="a")])
    await claim_n(queue, "w", 1, campaign="a")
    await queue.set_campaign_state("a", CANCELLED)
    assert await queue.record("w", [Outcome("a-00001", State.CANCELLED, "campaign cancelled")])
    await queue.enqueue([make_job(3, campaign="a")])
    (job,) = await claim_n(queue, "w", 1, campaign="a")
    await queue.record("w", [Outcome(job.id, State.SENT, "250 ok")])
    # the log reads on: no event of a type webhooks do not know
    assert [(e.type.value, e.job_id) for e in await queue.events.read(None, 100)] == [
        ("sent", "a-00003")
    ]


async def test_a_large_campaign_is_cancelled_whole(queue: Queue) -> None:
    """More jobs than one batch of a backend that cancels a batch at a time (Redis)."""
    later = time.time() + 3600
    jobs = [make_job(i, campaign="big") for i in range(1100)]
    jobs += [replace(make_job(i, campaign="big"), not_before=later) for i in range(1100, 1700)]
    await queue.enqueue(jobs)
    change = await queue.set_campaign_state("big", CANCELLED)
    assert change == change.__class__(CANCELLED, 1700)
    st = await queue.stats("big")
    assert st.get(State.CANCELLED) == 1700 and st.pending == 0
    assert await claim_all(queue, "w", "big") == []
