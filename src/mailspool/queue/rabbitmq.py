"""RabbitMQ as the queue, with the job store in PostgreSQL (``--store postgresql://...``).

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

URL: ``amqp://user:password@host:5672/vhost?prefix=mailspool&batch=50&delivery_limit=20
&claim_wait=0.5&max_hold=600&publish_timeout=30``; other parameters go to aio-pika.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import CampaignStats, Enqueued, Job, Outcome, State
from mailspool.queue.base import DeadFilter, Queue
from mailspool.store import JobStore, Ref, make_store
from mailspool.store.base import redact

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractIncomingMessage,
        AbstractQueue,
    )

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
RECONNECT_FIRST = 0.1  # seconds before the first reconnection attempt
RECONNECT_MAX = 5.0  # cap of the exponential backoff between attempts
CONNECT_TIMEOUT = 10.0
log = structlog.get_logger("mailspool")


class _QuietConnectErrors(logging.Filter):
    """aiormq logs each failed connection attempt as an error; while reconnecting the
    queue says so itself (on the first attempt, then every tenth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


def _quiet_aiormq() -> None:
    logger = logging.getLogger("aiormq.connection")
    if not any(isinstance(f, _QuietConnectErrors) for f in logger.filters):
        logger.addFilter(_QuietConnectErrors())


@dataclass(frozen=True, slots=True)
class AMQPSettings:
    url: str  # for aio-pika: our own parameters removed
    prefix: str = "mailspool"
    batch: int = 50  # job ids per message
    delivery_limit: int = 20  # x-delivery-limit of the work queue
    claim_wait: float = 0.5  # seconds a claim waits for a delivery before using the store
    max_hold: float = 600.0  # never hold a delivery longer (the broker's timeout is 30 min)
    publish_timeout: float = 30.0  # how long enqueue waits for an unreachable broker

    @property
    def work(self) -> str:
        return f"{self.prefix}.work"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"


def parse_amqp_url(url: str) -> AMQPSettings:
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    rest = []
    numbers = {
        "batch": (int, 1, 10_000),
        "delivery_limit": (int, 1, 1_000_000),
        "claim_wait": (float, 0.0, 60.0),
        "max_hold": (float, 1.0, 86_400.0),
        "publish_timeout": (float, 0.0, 3_600.0),
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            if not _PREFIX.fullmatch(value):
                raise ConfigError(f"prefix={value!r} in the queue URL: use letters, digits, _ . -")
            ours[name] = value
        elif name in numbers:
            kind, low, high = numbers[name]
            try:
                number = kind(value)
            except ValueError:
                number = math.nan
            if not low <= number <= high:
                raise ConfigError(f"{name}={value!r} in the queue URL: use {low}..{high}")
            ours[name] = number
        else:
            rest.append((name, value))
    return AMQPSettings(url=urlunsplit(parts._replace(query=urlencode(rest))), **ours)


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


def _chunks(refs: Sequence[Ref], size: int) -> Iterator[tuple[str, list[str]]]:
    by_campaign: dict[str, list[str]] = {}
    for r in refs:
        by_campaign.setdefault(r.campaign, []).append(r.id)
    for campaign, ids in by_campaign.items():
        for start in range(0, len(ids), size):
            yield campaign, ids[start : start + size]


class RabbitMQQueue(Queue):
    def __init__(self, url: str, store: str | JobStore | None) -> None:
        try:
            import aio_pika
            from aio_pika.exceptions import CONNECTION_EXCEPTIONS
        except ImportError as exc:
            raise MissingExtra("rabbitmq", "aio-pika") from exc
        if store is None:
            raise ConfigError(
                "the RabbitMQ queue needs a job store for job state (RabbitMQ only carries"
                " the deliveries): add --store postgresql://user@host:5432/database"
                " (or MAILSPOOL_STORE)"
            )
        self._pika = aio_pika
        _quiet_aiormq()
        self._errors: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, TimeoutError)
        self.cfg = parse_amqp_url(url)
        self.store = make_store(store) if isinstance(store, str) else store
        self._broker = redact(url)
        self.url = f"{self._broker} (store {self.store.url})"
        self._conn: AbstractConnection | None = None
        self._pub: AbstractChannel | None = None
        self._sub: AbstractChannel | None = None
        self._ready = asyncio.Event()  # connected, topology declared
        self._generation = 0
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._maintain_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._announcing: asyncio.Future[bool] | None = None
        # consuming starts with the first claim: producers never hold deliveries
        self._prefetch = 0
        self._consume_lock = asyncio.Lock()
        self._inbox: deque[_Delivery] = deque()
        self._arrived = asyncio.Event()
        self._held: dict[str, _Delivery] = {}

    # -- connection -----------------------------------------------------------------

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

    async def _connect(self) -> None:
        conn = await self._pika.connect(self.cfg.url, timeout=CONNECT_TIMEOUT)
        try:
            pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare(pub)
            self._generation += 1
            sub = await self._subscribe(conn) if self._prefetch else None
        except BaseException:
            with contextlib.suppress(*self._errors):
                await conn.close()
            raise
        self._conn, self._pub, self._sub = conn, pub, sub
        conn.close_callbacks.add(self._on_connection_closed)
        for ch in (pub, sub):
            if ch is not None:
                ch.close_callbacks.add(self._on_channel_closed)
        self._ready.set()

    async def _declare(self, ch: AbstractChannel) -> None:
        cfg = self.cfg
        try:
            dlx = await ch.declare_exchange(cfg.dlx, self._pika.ExchangeType.FANOUT, durable=True)
            dead = await ch.declare_queue(
                cfg.dead, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx)
            await ch.declare_queue(cfg.work, durable=True, arguments=self._work_arguments())
        except self._pika.exceptions.ChannelPreconditionFailed as exc:
            raise QueueError(
                f"the RabbitMQ queue {cfg.work} exists with other settings ({exc}):"
                " use the delivery_limit it was created with, or another ?prefix="
            ) from exc

    def _work_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.cfg.delivery_limit,
            "x-dead-letter-exchange": self.cfg.dlx,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }

    async def _subscribe(self, conn: AbstractConnection) -> AbstractChannel:
        ch = await conn.channel(publisher_confirms=False)
        await ch.set_qos(prefetch_count=self._prefetch)
        generation = self._generation
        work: AbstractQueue = await ch.declare_queue(
            self.cfg.work, durable=True, arguments=self._work_arguments()
        )
        await work.consume(functools.partial(self._on_delivery, generation))
        dead: AbstractQueue = await ch.declare_queue(
            self.cfg.dead, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.consume(functools.partial(self._on_dead_letter, generation))
        return ch

    def _on_connection_closed(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._closing or sender is not self._conn:
            return
        log.warning("rabbitmq connection lost; reconnecting", broker=self._broker, error=repr(exc))
        self._conn = self._pub = self._sub = None
        self._ready.clear()
        self._generation += 1  # every delivery held is returned to the queue by the broker
        self._inbox.clear()
        self._arrived.set()  # a claim waiting for deliveries goes to the store instead
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(self._reconnect())

    def _on_channel_closed(self, sender: Any, exc: BaseException | None = None) -> None:
        """A channel closed under a live connection (an error on it, a consumer timeout):
        start again with a fresh connection, which the reconnection loop does."""
        conn = self._conn
        if self._closing or conn is None or conn.is_closed:
            return
        self._spawn(conn.close())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST
        attempts = 0
        while not self._closing:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempts += 1
            try:
                await self._connect()
            except self._errors as exc:
                if attempts == 1 or attempts % 10 == 0:
                    log.warning("rabbitmq unreachable", broker=self._broker, error=repr(exc))
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            except QueueError as exc:
                log.error("rabbitmq refused the queue settings", error=str(exc))
                delay = RECONNECT_MAX
                continue
            log.warning("rabbitmq reconnected", broker=self._broker, attempts=attempts)
            return

    async def _wait_ready(self, timeout: float) -> bool:
        if self._ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        try:
            await self._announced()
        finally:
            await self._close()

    async def _close(self) -> None:
        self._closing = True
        for task in (self._reconnect_task, self._maintain_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
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

    # -- announcements ----------------------------------------------------------------

    async def _publish(self, refs: Sequence[Ref]) -> None:
        pub = self._pub
        if pub is None:
            raise QueueError(f"not connected to RabbitMQ at {self._broker}")
        exchange = pub.default_exchange
        results = await asyncio.gather(
            *(
                exchange.publish(
                    self._pika.Message(
                        "\n".join(ids).encode(),
                        headers={"campaign": campaign},
                        delivery_mode=self._pika.DeliveryMode.PERSISTENT,
                        content_type="text/plain",
                    ),
                    routing_key=self.cfg.work,
                )
                for campaign, ids in _chunks(refs, self.cfg.batch)
            ),
            return_exceptions=True,
        )
        for res in results:
            if isinstance(res, BaseException):
                raise QueueError(f"RabbitMQ did not confirm a message: {res!r}") from res

    async def _announce(self, refs: Sequence[Ref], *, wait: bool) -> bool:
        """Publish messages naming ``refs`` (confirmed by the broker). With ``wait``, keep
        trying through a reconnection for up to ``publish_timeout``, then raise; without,
        one try: jobs left unannounced are claimed from the store."""
        if not refs:
            return True
        deadline = time.monotonic() + (self.cfg.publish_timeout if wait else 0.0)
        while True:
            error: QueueError | None = None
            if self._ready.is_set():
                try:
                    await self._publish(refs)
                    return True
                except QueueError as exc:
                    error = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._wait_ready(remaining):
                if not wait:
                    return False
                raise QueueError(
                    f"RabbitMQ at {self._broker} did not take {len(refs)} new jobs within"
                    f" {self.cfg.publish_timeout:.0f}s ({error or 'not connected'}); they are"
                    " stored and workers will claim them from the store"
                )
            if error is not None:
                await asyncio.sleep(0.05)  # the connection is being replaced

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
            # enough messages to fill the next claims, not so many that they wait long
            self._prefetch = max(4, math.ceil(8 * limit / self.cfg.batch))
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
        self, owner: str, job_ids: Sequence[str], not_before: float | None = None
    ) -> None:
        refs = await self.store.release(owner, job_ids, not_before)
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
