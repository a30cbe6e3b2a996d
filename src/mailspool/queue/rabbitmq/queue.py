"""RabbitMQ as the queue, with the job store in PostgreSQL or Redis (``--store URL``).

::

    producer  --insert-->  store (state queued)  --publish, confirmed-->  <prefix>.work
    worker    <--deliveries: job ids--  <prefix>.work (quorum queue, manual acks)
              --claim those ids under a lease-->  store  -->  jobs to send
              --record the outcome-->  store, then ack the delivery
    <prefix>.work --delivery limit reached--> <prefix>.dlx --> <prefix>.dead --> announced again

A broker message names up to ``batch`` job ids of one campaign (an *announcement*). The
store is the source of truth: a job is claimed only when the store says it is due, under
a lease, so a redelivered message never sends a job twice (one already ``sent`` is skipped
and the message acknowledged). A delivery stays unacknowledged while its jobs are held
here, and is acknowledged once each of them is recorded, handed back or found not due.

Nothing that is due depends on a message alone. Retries (``deferred``) and expired leases
are claimed from the store when due, so no message waits unacknowledged for a retry delay
and none is held past the broker's consumer timeout (``max_hold`` bounds it). A queued job
whose message is lost (a producer killed between its commit and its publish), held by
another worker or unreachable (the broker is down) is claimed from the store as well when
no delivery comes within ``claim_wait``. Workers reconnect with backoff after a broker
restart; in the meantime they go on from the store.

A paused campaign's jobs are claimed by no one (the store says they are not due): the
messages naming them are acknowledged as they come, once, and its resume announces its
due jobs again, so no consumer spins on them while it waits.

URL: ``amqp://user:password@host:5672/vhost?prefix=mailspool&batch=200&delivery_limit=20
&claim_wait=0.5&max_hold=600&publish_timeout=30``; other parameters go to aio-pika.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.base import DeadFilter, Queue
from mailspool.queue.events import EventLog
from mailspool.queue.rabbitmq.connection import CONNECT_TIMEOUT, quiet_aiormq
from mailspool.queue.rabbitmq.deliveries import DeliveryConsumer
from mailspool.queue.rabbitmq.topology import parse_amqp_url
from mailspool.queue.returns import ReturnLog
from mailspool.queue.store import JobStore, make_store, store_class
from mailspool.queue.suppression import SuppressionList
from mailspool.tasks import cancel_and_wait
from mailspool.urls import redact_url

__all__ = ["RabbitMQQueue"]


class RabbitMQQueue(DeliveryConsumer, Queue):
    """Every role of :class:`Queue` over a RabbitMQ broker and a :class:`JobStore` (see the
    module docstring). ``url``: ``amqp://`` or ``amqps://``, with the options above;
    ``store``: the job store's URL (``postgresql://``, ``redis://``) or a store, opened
    and closed with the queue. aio-pika (the ``rabbitmq`` extra) is needed.

    Connecting, reconnecting and publishing are in :mod:`.connection`, deliveries and
    their claims in :mod:`.deliveries`; this class sets up their state and answers the
    interface, each role by the store's role of the same name."""

    store: JobStore

    @classmethod
    def from_url(cls, url: str, store: str | None) -> Queue:
        return cls(url=url, store=store)

    @classmethod
    def packs_for(cls, store: str | None) -> bool:
        # the store keeps the messages; without one, __init__ says what to add
        return store is not None and store_class(store).packs_messages

    @property
    def suppressions(self) -> SuppressionList:
        """The job store's suppression list."""
        return self.store.suppressions

    @property
    def returns(self) -> ReturnLog:
        """The job store's returned mail."""
        return self.store.returns

    @property
    def events(self) -> EventLog:
        """The job store's events and webhook delivery state."""
        return self.store.events

    async def ready(self, timeout: float) -> bool:
        """The job store answers, and the broker connection is up: while it is down, a
        POST's jobs are stored but not announced, and the next POST waits for them."""
        return await super().ready(timeout) and await self._wait_ready(timeout)

    def __init__(self, *, url: str, store: str | JobStore | None) -> None:
        try:
            import aio_pika
            from aio_pika.exceptions import CONNECTION_EXCEPTIONS
        except ImportError as exc:
            raise MissingExtra("rabbitmq", "aio-pika") from exc
        if store is None:
            raise ConfigError(
                "the RabbitMQ queue needs a job store for job state (RabbitMQ only carries"
                " the deliveries): add --store postgresql://user@host:5432/database"
                " or --store redis://host:6379/0 (or MAILSPOOL_STORE)"
            )
        self._pika = aio_pika
        quiet_aiormq()
        self._errors = (*CONNECTION_EXCEPTIONS, TimeoutError)
        self.cfg = parse_amqp_url(url)
        self.store = make_store(store) if isinstance(store, str) else store
        self.packs_messages = self.store.packs_messages
        self._broker = redact_url(url)
        self.url = f"{self._broker} (store {self.store.url})"
        self._conn = None
        self._pub = None
        self._sub = None
        self._ready = asyncio.Event()  # connected, topology declared
        self._generation = 0
        self._closing = False
        self._reconnect_task = None
        self._maintain_task = None
        self._background = set()
        self._announcing: asyncio.Future[bool] | None = None
        # consuming starts with the first claim: producers never hold deliveries
        self._prefetch = 0
        self._consume_lock = asyncio.Lock()
        self._inbox = deque()
        self._arrived = asyncio.Event()
        self._held = {}

    # -- opening and closing -------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._connect()
        except self._errors as exc:
            raise QueueError(f"cannot connect to RabbitMQ at {self._broker}: {exc!r}") from exc
        try:
            await self.store.open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        try:
            await self._announced()
        finally:
            await self._close()

    async def _close(self) -> None:
        self._closing = True
        await cancel_and_wait(t for t in (self._reconnect_task, self._maintain_task) if t)
        try:
            if self._background:  # acknowledgements first, while the channel is open
                await asyncio.gather(*self._background, return_exceptions=True)
            await self._stop_consuming()
            if self._conn is not None:
                with contextlib.suppress(*self._errors):
                    await asyncio.wait_for(self._conn.close(), CONNECT_TIMEOUT)
        finally:
            self._conn = self._pub = self._sub = None
            self._ready.clear()
            await self.store.close()

    # -- the Queue interface ------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
        results, added = await self.store.insert(jobs)
        # The messages of one batch are confirmed while the producer prepares the next:
        # the store already holds the jobs, and a failure is raised by the next enqueue
        # (or close) all the same.
        await self._announced()
        if added:
            self._announcing = asyncio.ensure_future(self._announce(added, wait=True))
        return results

    async def _announced(self) -> None:
        """Wait for the previous batch's messages to be confirmed; raise if they were not."""
        task, self._announcing = self._announcing, None
        if task is not None:
            await task

    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]:
        if limit <= 0:
            return []
        await self._ensure_consuming(limit)
        jobs = await self._claim_delivered(owner, limit, lease, campaign)
        if len(jobs) < limit:  # retries and expired leases are claimed from the store
            jobs += await self.store.claim_due(
                owner, limit - len(jobs), lease, campaign, (State.DEFERRED, State.SENDING)
            )
        if len(jobs) < limit and await self.store.has_due(campaign, (State.QUEUED,)):
            delivered: list[Job] = []
            if self._ready.is_set() and await self._wait_delivery():
                delivered = await self._claim_delivered(owner, limit - len(jobs), lease, campaign)
                jobs += delivered
            if not delivered:
                # none came, or none for us: the messages of these jobs were lost, sit with
                # another worker, or the broker is down; the store has them
                jobs += await self.store.claim_due(
                    owner, limit - len(jobs), lease, campaign, (State.QUEUED,)
                )
        elif not jobs and await self._idle_wait(campaign):
            jobs += await self._claim_delivered(owner, limit, lease, campaign)
        return jobs

    async def _idle_wait(self, campaign: str | None) -> bool:
        """Nothing to do yet: wait a little for new work (True when some came), so that it
        starts at once instead of at the caller's next poll. Not once the campaign has
        jobs: then the caller learns at once that it is complete."""
        if not self._ready.is_set() or await self._campaign_started(campaign):
            return False
        return await self._wait_delivery()

    async def _campaign_started(self, campaign: str | None) -> bool:
        return campaign is not None and await self.store.exists(campaign)

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        applied = await self.store.record(owner, outcomes)
        # acknowledged also when the lease was lost: the job is another's now (or due
        # again in the store), and this delivery must not be held until it times out
        self._settle_held([o.job_id for o in outcomes])
        return applied

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        await self.store.extend(owner, job_ids, lease)

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None:
        refs = await self.store.release(owner, job_ids, not_before, reply)
        if not_before is None:  # due now: a fresh message, rather than a counted return
            await self._announce(refs, wait=False)
        self._settle_held(job_ids)

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        return await self.store.lease_owners(campaign)

    async def release_owner(self, owner: str) -> int:
        refs = await self.store.release_owner(owner)
        await self._announce(refs, wait=False)
        self._settle_held([r.id for r in refs])
        return len(refs)

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        return await self.store.stats(campaign)

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    async def put_blob(self, digest: str, data: bytes) -> None:
        await self.store.put_blob(digest, data)

    async def get_blob(self, digest: str) -> bytes | None:
        return await self.store.get_blob(digest)

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        return await self.store.dead_letters(flt, limit)

    async def retry_dead(self, flt: DeadFilter) -> int:
        refs = await self.store.retry_dead(flt)
        await self._announce(refs, wait=False)
        return len(refs)

    async def purge_dead(self, flt: DeadFilter) -> int:
        return await self.store.purge_dead(flt)

    async def campaigns(self) -> list[str]:
        return await self.store.campaigns()

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        await self.store.set_campaign_settings(campaign, settings)

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        return await self.store.campaign_settings(campaign)

    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange:
        change, due = await self.store.set_campaign_state(campaign, state)
        await self._announce(due, wait=False)  # resumed: their messages went unclaimed
        return change

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        return await self.store.campaign_states(campaigns)
