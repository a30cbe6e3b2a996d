"""The consuming side of the RabbitMQ queue: deliveries from the work queue (job ids,
claimed from the store under a lease) and from the dead-letter queue (announced again),
each held until every job it names is settled, and never past ``max_hold``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from mailspool.errors import QueueError
from mailspool.models import Job
from mailspool.queue.rabbitmq.connection import CONNECT_TIMEOUT, BrokerConnection
from mailspool.queue.roles import StoreClaiming
from mailspool.queue.store import Ref

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractIncomingMessage,
        AbstractQueue,
    )

log = structlog.get_logger("mailspool")


@dataclass(eq=False, slots=True)
class _Delivery:
    """One broker message and the job ids it names."""

    message: AbstractIncomingMessage
    generation: int  # of the connection it came on; acks on a closed one are moot
    campaign: str
    ids: list[str]
    received: float = field(default_factory=time.monotonic)
    taken: int = 0  # ids handed to claims so far
    open: int = 0  # taken ids not settled yet
    acked: bool = False

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.taken

    def take(self, n: int) -> list[str]:
        out = self.ids[self.taken : self.taken + n]
        self.taken += len(out)
        self.open += len(out)
        return out


class DeliveryConsumer(BrokerConnection):
    """The consumer half of :class:`~mailspool.queue.rabbitmq.queue.RabbitMQQueue`, which sets
    these attributes up: consuming starts with the first claim."""

    store: StoreClaiming
    _prefetch: int
    _consume_lock: asyncio.Lock
    _inbox: deque[_Delivery]
    _arrived: asyncio.Event
    _held: dict[str, _Delivery]
    _maintain_task: asyncio.Task[None] | None

    async def _subscribe(self, conn: AbstractConnection) -> AbstractChannel:
        ch = await conn.channel(publisher_confirms=False)
        await ch.set_qos(prefetch_count=self._prefetch)
        generation = self._generation
        work: AbstractQueue = await ch.declare_queue(
            self.cfg.work, durable=True, arguments=self.cfg.work_arguments()
        )
        await work.consume(functools.partial(self._on_delivery, generation))
        dead: AbstractQueue = await ch.declare_queue(
            self.cfg.dead, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.consume(functools.partial(self._on_dead_letter, generation))
        return ch

    async def _resubscribe(self, conn: AbstractConnection) -> AbstractChannel | None:
        return await self._subscribe(conn) if self._prefetch else None

    def _drop_deliveries(self) -> None:
        self._inbox.clear()
        self._arrived.set()  # a claim waiting for deliveries goes to the store instead

    async def _stop_consuming(self) -> None:
        """Stop deliveries; what was delivered here and not acknowledged goes back to the
        queue (a worker hands back what it holds before it closes the queue)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        with contextlib.suppress(*self._errors):
            await asyncio.wait_for(sub.close(), CONNECT_TIMEOUT)
        await asyncio.sleep(0)  # deliveries already received run their callbacks
        self._inbox.clear()

    # -- deliveries -------------------------------------------------------------------

    async def _on_delivery(self, generation: int, message: AbstractIncomingMessage) -> None:
        if generation != self._generation or self._closing:
            return  # its channel is gone: the broker has it back
        try:
            ids = [i for i in message.body.decode().split("\n") if i]
        except UnicodeDecodeError:
            ids = []
        headers = message.headers or {}
        campaign = headers.get("campaign")
        if not ids or not isinstance(campaign, str):
            log.warning("dropping a malformed rabbitmq message", queue=self.cfg.work)
            await self._ack_message(message)
            return
        self._inbox.append(_Delivery(message, generation, campaign, ids))
        self._arrived.set()

    async def _on_dead_letter(self, generation: int, message: AbstractIncomingMessage) -> None:
        """A message went past the delivery limit (returned again and again: workers died
        or lost their connection while holding it). The store decides: jobs still due are
        announced again in a fresh message; the rest are leased or final."""
        if generation != self._generation or self._closing:
            return
        ids = [i for i in message.body.decode(errors="replace").split("\n") if i]
        try:
            refs = await self.store.queued(ids)
            await self._announce(refs, wait=False)
        except QueueError as exc:
            log.warning("could not re-announce dead-lettered jobs", error=str(exc))
            await asyncio.sleep(1.0)
            with contextlib.suppress(*self._errors):
                await message.nack(requeue=True)
            return
        log.warning("rabbitmq delivery limit reached", jobs=len(ids), announced_again=len(refs))
        await self._ack_message(message)

    async def _ack_message(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(*self._errors):
            await message.ack()

    def _settle(self, d: _Delivery) -> None:
        """One of the delivery's jobs is done here; acknowledge it after its last."""
        d.open -= 1
        if d.open <= 0 and d.remaining == 0 and not d.acked:
            d.acked = True
            if d.generation == self._generation:
                self._spawn(self._ack_message(d.message))

    def _settle_held(self, job_ids: Sequence[str]) -> None:
        for jid in job_ids:
            d = self._held.pop(jid, None)
            if d is not None:
                self._settle(d)

    async def _ensure_consuming(self, limit: int) -> None:
        if self._prefetch:
            return
        async with self._consume_lock:
            if self._prefetch:
                return
            # enough messages to fill the next claims, and one in reserve; not so many that
            # a slow worker sits on jobs that others could send
            self._prefetch = max(2, math.ceil(8 * limit / self.cfg.batch))
            conn = self._conn
            if conn is not None and self._ready.is_set():
                try:
                    self._sub = await self._subscribe(conn)
                    self._sub.close_callbacks.add(self._on_channel_closed)
                except self._errors as exc:
                    log.warning("could not consume from rabbitmq", error=repr(exc))
                    self._spawn(conn.close())  # the reconnection loop subscribes again
            self._maintain_task = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        """Never hold a delivery past ``max_hold``: announce its unclaimed jobs again in a
        fresh message, and let the store's leases alone cover the jobs being sent."""
        interval = max(0.5, min(self.cfg.max_hold / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            too_old = time.monotonic() - self.cfg.max_hold
            stale = [d for d in self._inbox if d.received < too_old]
            for d in stale:
                self._inbox.remove(d)
                ids = d.take(d.remaining)
                try:
                    await self._announce([Ref(i, d.campaign) for i in ids], wait=False)
                finally:
                    for _ in ids:
                        self._settle(d)
            for jid, d in list(self._held.items()):
                if d.received < too_old:
                    del self._held[jid]
                    self._settle(d)

    async def _claim_delivered(
        self, owner: str, limit: int, lease: float, campaign: str | None
    ) -> list[Job]:
        jobs: list[Job] = []
        while len(jobs) < limit and self._inbox:
            taken: list[tuple[str, _Delivery]] = []
            while len(taken) < limit - len(jobs) and self._inbox:
                d = self._inbox[0]
                if campaign is not None and d.campaign != campaign:
                    # another campaign's jobs: its own workers claim them from the store
                    self._inbox.popleft()
                    for _ in d.take(d.remaining):
                        self._settle(d)
                    continue
                taken.extend((jid, d) for jid in d.take(limit - len(jobs) - len(taken)))
                if d.remaining == 0:
                    self._inbox.popleft()
            if not taken:
                break
            try:
                claimed = await self.store.claim_ids(
                    owner, [jid for jid, _ in taken], lease, campaign
                )
            except QueueError:  # acknowledged: the store still has them due
                for _, d in taken:
                    self._settle(d)
                raise
            by_id = {j.id: j for j in claimed}
            for jid, d in taken:
                job = by_id.pop(jid, None)
                if job is None:  # sent, dead, leased by another, not due yet, or purged
                    self._settle(d)
                    continue
                previous = self._held.get(jid)
                if previous is not None:
                    self._settle(previous)
                self._held[jid] = d
                jobs.append(job)
        return jobs

    async def _wait_delivery(self) -> bool:
        if self._inbox:
            return True
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), self.cfg.claim_wait)
        return bool(self._inbox)
