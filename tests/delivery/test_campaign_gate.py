"""Campaign control at the worker (delivery/campaigns.py): a job claimed before its
campaign is paused goes back to the queue untried, one claimed before a cancel is
recorded cancelled, whether the change comes while it waits in the buffer or for its
rate slot, and a job queued to a cancelled campaign later is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailspool.delivery.observer import Counter
from mailspool.delivery.worker import Worker, WorkerConfig
from mailspool.models import CampaignState, State
from mailspool.queue import MemoryQueue
from mailspool.transport.base import Delivery, Envelope, Ready, Transport
from tests.support.jobs import make_job


class Scripted(Transport):
    """Takes every message it is given (``sent``), after running ``before`` once, at the
    first send, before it awaits ``ready`` (where the worker takes its rate slot)."""

    description = "scripted"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.before: Callable[[], Awaitable[None]] | None = None

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        if self.before is not None:
            before, self.before = self.before, None
            await before()
        if ready is not None:
            await ready()
        self.sent.append(envelope.job_id)
        return Delivery(250, "ok")


def worker(queue: MemoryQueue, transport: Transport, counter: Counter) -> Worker:
    config = WorkerConfig(concurrency=2, poll_interval=0.02, shutdown_grace=5)
    return Worker(queue=queue, transport=transport, config=config, observers=[counter])


async def drain(w: Worker, queue: MemoryQueue) -> None:
    """Run until nothing is claimable (a paused campaign's jobs are not): the worker asks
    ``idle`` only when a claim found nothing and it holds nothing."""

    async def idle() -> bool:
        return True

    await asyncio.wait_for(w.run(idle), 30)


async def test_a_cancel_while_a_job_waits_for_its_slot_sends_none_of_its_campaign() -> None:
    queue, transport, counter = MemoryQueue(), Scripted(), Counter()
    await queue.enqueue([make_job(i, deliverable=True) for i in range(6)])
    w = worker(queue, transport, counter)

    async def cancel() -> None:  # claimed, taken by a sender, not yet in a transaction
        await queue.set_campaign_state("c1", CampaignState.CANCELLED)
        await w.campaigns.refresh()

    transport.before = cancel
    await drain(w, queue)
    assert transport.sent == []
    st = await queue.stats("c1")
    assert st.get(State.CANCELLED) == 6 and st.pending == 0
    assert counter.cancelled_count == 6 and counter.sent_count == 0


async def test_a_pause_hands_the_claimed_jobs_back_untried_and_a_resume_sends_them() -> None:
    queue, transport, counter = MemoryQueue(), Scripted(), Counter()
    await queue.enqueue([make_job(i, deliverable=True) for i in range(6)])
    w = worker(queue, transport, counter)

    async def pause() -> None:
        await queue.set_campaign_state("c1", CampaignState.PAUSED)
        await w.campaigns.refresh()

    transport.before = pause
    await drain(w, queue)
    assert transport.sent == []
    st = await queue.stats("c1")
    assert st.get(State.QUEUED) == 6 and st.get(State.SENDING) == 0
    assert all(j.attempts == 0 for j in queue.jobs.values())  # handed back uncharged
    await queue.set_campaign_state("c1", CampaignState.ACTIVE)
    await drain(worker(queue, transport, counter), queue)
    assert sorted(transport.sent) == sorted(queue.jobs)
    assert (await queue.stats("c1")).get(State.SENT) == 6


async def test_a_job_queued_to_a_cancelled_campaign_is_recorded_cancelled_at_claim() -> None:
    queue, transport, counter = MemoryQueue(), Scripted(), Counter()
    await queue.set_campaign_state("c1", CampaignState.CANCELLED)
    await queue.enqueue([make_job(i, deliverable=True) for i in range(3)])
    await queue.enqueue([make_job(9, deliverable=True, campaign="other")])
    await drain(worker(queue, transport, counter), queue)
    assert transport.sent == ["job00009"]
    assert (await queue.stats("c1")).get(State.CANCELLED) == 3
    assert counter.cancelled_count == 3 and counter.sent_count == 1
