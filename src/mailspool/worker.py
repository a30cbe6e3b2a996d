"""The worker: claim due jobs, send each through the transport, record the outcome.

    feeder     claims batches under a lease while the local buffer runs low
    senders    ``concurrency`` tasks: rate limit, relay gate, send, decide the outcome
    recorder   writes outcomes in batches (one transaction each): sent before anything else
    heartbeat  extends the leases of every job held here, so a slow send is never
               handed to a second worker

Observers (progress, logs, metrics) are told about each outcome; none of that lives in
the loop itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailspool.classify import Action, Verdict, classify
from mailspool.compose import attachment_part, wrap_mixed
from mailspool.errors import DeliveryError, MailspoolError, QueueError, ReplyError
from mailspool.limits import Limits, LimitSettings, LocalLimits, NoLimits
from mailspool.models import DeadReason, Job, Outcome, State, job_id
from mailspool.observe import Observer
from mailspool.queue.base import Queue
from mailspool.relay import RelayGate
from mailspool.retry import RetryPolicy
from mailspool.transport.base import Delivery, Envelope, Transport


def owner_is_dead_here(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return not owner.endswith(WORKER_TOKEN)  # same pid, earlier process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


WORKER_TOKEN = uuid.uuid4().hex[:8]


async def reclaim_dead_leases(queue: Queue, campaign: str | None = None) -> int:
    """Hand back at once the leases of processes on this host that no longer exist (a
    SIGKILLed run), instead of waiting for their leases to expire."""
    reclaimed = 0
    for owner in await queue.lease_owners(campaign):
        if owner_is_dead_here(owner):
            reclaimed += await queue.release_owner(owner)
    return reclaimed


@dataclass
class WorkerConfig:
    concurrency: int = 8
    lease: float = 60.0
    limits: LimitSettings = field(default_factory=LimitSettings)
    campaign: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll_interval: float = 0.5
    shutdown_grace: float = 30.0


class Worker:
    def __init__(
        self,
        queue: Queue,
        transport: Transport,
        config: WorkerConfig,
        observers: list[Observer] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.config = config
        # host:pid:token - lets a later run on this host reclaim a dead process's leases
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{WORKER_TOKEN}"
        self.observers = observers or []
        # limits shared across processes are passed in; otherwise this process holds them
        self.limits: Limits = limits or (
            LocalLimits(config.limits) if config.limits.any else NoLimits()
        )
        self.gate = RelayGate()
        self._buffer: asyncio.Queue[Job | None] = asyncio.Queue()
        self._held: set[str] = set()
        self._outcomes: list[Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._in_flight = 0
        self._stopping = asyncio.Event()
        self._closing = False
        self._policies: dict[str, RetryPolicy] = {}
        self._parked: list[str] = []
        self._park_task: asyncio.Task[None] | None = None
        self._parts: dict[str, bytes] = {}
        self.lost_leases = 0
        self.error: BaseException | None = None

    # -- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; messages in flight finish; buffered jobs are handed back."""
        self._stopping.set()

    @property
    def busy(self) -> bool:
        return bool(self._held) or self._in_flight > 0

    async def run(self, idle: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Run until stopped, or until ``idle()`` (asked when nothing is due) says so."""
        senders = [asyncio.create_task(self._sender()) for _ in range(self.config.concurrency)]
        recorder = asyncio.create_task(self._recorder())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._feeder(idle)
        except QueueError as exc:
            self.error = exc
        finally:
            for _ in senders:
                self._buffer.put_nowait(None)
            grace = self.config.shutdown_grace if self._stopping.is_set() else None
            _, late = await asyncio.wait(senders, timeout=grace)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if self._park_task is not None:
                await asyncio.gather(self._park_task, return_exceptions=True)
            self._closing = True
            self._outcome_ready.set()
            await recorder
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._release_unsent()
            await self.transport.close()
        if self.error is not None:
            raise self.error

    async def _release_unsent(self) -> None:
        """Hand back at once (no waiting for lease expiry) what was claimed but not tried."""
        if self._held:
            with contextlib.suppress(QueueError):
                await self.queue.release(self.owner, sorted(self._held))
            self._held.clear()

    # -- feeder -------------------------------------------------------------------

    def _batch_size(self) -> int:
        n = self.config.concurrency * 8
        rate = self.config.limits.rate
        if rate:  # do not lease far more than the rate lets us send soon
            n = min(n, max(self.config.concurrency, int(2 * rate)))
        return max(1, min(n, 1000))

    async def _feeder(self, idle: Callable[[], Awaitable[bool]] | None) -> None:
        batch = self._batch_size()
        wait = self.config.poll_interval
        while not self._stopping.is_set():
            if self.gate.paused:
                # claim nothing while the relay is paused, but let the caller decide to stop
                if not self.busy and idle is not None and await idle():
                    return
                await self._sleep(min(self.gate.remaining(), self.config.poll_interval))
                continue
            if self._buffer.qsize() > batch // 2:
                await self._sleep(0.005)
                continue
            jobs = await self.queue.claim(
                self.owner, batch, self.config.lease, self.config.campaign
            )
            for campaign in {j.campaign for j in jobs} - self._policies.keys():
                self._policies[campaign] = await self._campaign_policy(campaign)
            for job in jobs:
                self._held.add(job.id)
                self._buffer.put_nowait(job)
            if jobs:
                wait = 0.01
                continue
            if not self.busy and idle is not None and await idle():
                return
            await self._sleep(wait)
            wait = min(self.config.poll_interval, wait * 2)

    async def _campaign_policy(self, campaign: str) -> RetryPolicy:
        """The campaign's own retry schedule when it was enqueued with one, else ours."""
        override = (await self.queue.campaign_settings(campaign)).get("retry")
        if not override:
            return self.config.retry
        return dataclasses.replace(self.config.retry, **override)

    def _park(self, job_ids: list[str]) -> None:
        """The relay is paused: hand these back, due when it reopens, so no job sits
        leased behind a closed gate (nor is charged an attempt for it)."""
        self._parked.extend(job_ids)
        if self._park_task is None or self._park_task.done():
            self._park_task = asyncio.create_task(self._release_parked())

    async def _release_parked(self) -> None:
        await asyncio.sleep(0)  # collect what other senders park in the same tick
        while self._parked:
            ids, self._parked = self._parked, []
            until = time.time() + max(1.0, self.gate.remaining())
            with contextlib.suppress(QueueError):
                await self.queue.release(self.owner, ids, not_before=until)
            self._held.difference_update(ids)

    def _drain_buffer(self) -> list[str]:
        ids = []
        while not self._buffer.empty():
            job = self._buffer.get_nowait()
            if job is None:  # shutting down: keep the sentinel for a sender
                self._buffer.put_nowait(None)
                break
            ids.append(job.id)
        return ids

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- senders ------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            job = await self._buffer.get()
            if job is None:
                return
            if self._stopping.is_set():
                continue  # still held: handed back by _release_unsent
            if self.gate.paused:
                self._park([job.id, *self._drain_buffer()])
                continue
            self._in_flight += 1
            try:
                outcome = await self._attempt(job)
            finally:
                self._in_flight -= 1
            self._outcomes.append(outcome)
            self._outcome_ready.set()

    async def _attempt(self, job: Job) -> Outcome:
        try:
            data = await self._message_bytes(job)
        except MailspoolError as exc:
            return self._dead(job, DeadReason.INVALID_MESSAGE, str(exc))
        domain = job.domain
        waited = await self.limits.acquire(domain)
        if waited:
            for obs in self.observers:
                obs.rate_limited(waited)
        started = time.monotonic()
        try:
            delivery = await self.transport.send(Envelope(job.sender, job.recipients, data, job.id))
        except DeliveryError as err:
            return self._failed(job, err, classify(err), time.monotonic() - started)
        finally:
            self.limits.release(domain)
        self.gate.success()
        for obs in self.observers:
            obs.sent(job, delivery, time.monotonic() - started)
        reply = _sent_reply(delivery)
        if delivery.refused:
            reply += await self._retry_refused(job, delivery)
        return Outcome(job.id, State.SENT, reply[:1000])

    async def _retry_refused(self, job: Job, delivery: Delivery) -> str:
        """Recipients refused with a temporary reply get the same message (same
        Message-ID) later, as a job of their own; permanent refusals stay recorded in the
        reply. Returns a note for the reply."""
        later = sorted(r for r, why in delivery.refused.items() if _transient(why))
        if not later:
            return ""
        policy = self._policies.get(job.campaign, self.config.retry)
        decision = policy.next_attempt(job.attempts, job.created_at, time.time())
        if isinstance(decision, DeadReason):
            return f" | not retried ({decision.value}): {', '.join(later)}"
        key = f"{job.key}|retry:{','.join(later)}"
        child = dataclasses.replace(
            job,
            id=job_id(job.campaign, key),
            key=key,
            recipients=tuple(later),
            state=State.QUEUED,
            attempts=0,
            not_before=decision,
            lease_owner="",
            last_reply="",
        )
        try:
            await self.queue.enqueue([child])
        except QueueError as exc:
            return f" | could not queue a retry for {', '.join(later)}: {exc}"
        return f" | retrying {', '.join(later)} as job {child.id}"

    async def _message_bytes(self, job: Job) -> bytes:
        if not job.attachments:
            return job.message
        parts = []
        for ref in job.attachments:
            part = self._parts.get(ref.digest)
            if part is None:
                blob = await self.queue.get_blob(ref.digest)
                if blob is None:
                    raise MailspoolError(f"attachment {ref.filename} is missing from the store")
                part = self._parts[ref.digest] = attachment_part(ref, blob)
            parts.append(part)
        return wrap_mixed(job.message, job.body_offset, parts, "mix-" + job.id[:16])

    def _failed(self, job: Job, err: DeliveryError, verdict: Verdict, elapsed: float) -> Outcome:
        if verdict.action is Action.PAUSE:
            pauses = self.gate.pauses
            delay = self.gate.pause(err)
            self._park(self._drain_buffer())
            if self.gate.pauses != pauses:  # tell once per pause, not once per sender
                for obs in self.observers:
                    obs.relay_paused(err, delay)
        if verdict.action is Action.DEAD:
            assert verdict.reason is not None
            return self._dead(job, verdict.reason, err.reply, verdict.ambiguous)
        now = time.time()
        decision: float | DeadReason
        if verdict.action is Action.PAUSE:
            # the relay's fault, not the job's: no attempt is charged against max_attempts,
            # and the job is due again when the relay is expected back
            decision = now + max(1.0, self.gate.remaining())
            if decision - job.created_at > self.config.retry.max_age:
                decision = DeadReason.EXPIRED
        else:
            policy = self._policies.get(job.campaign, self.config.retry)
            decision = policy.next_attempt(job.attempts, job.created_at, now)
        if isinstance(decision, DeadReason):
            return self._dead(job, decision, err.reply, verdict.ambiguous)
        for obs in self.observers:
            obs.deferred(job, err, verdict, decision, elapsed)
        return Outcome(job.id, State.DEFERRED, err.reply, decision, ambiguous=verdict.ambiguous)

    def _dead(self, job: Job, reason: DeadReason, reply: str, ambiguous: bool = False) -> Outcome:
        for obs in self.observers:
            obs.dead(job, reason, reply)
        return Outcome(job.id, State.DEAD, reply, reason=reason.value, ambiguous=ambiguous)

    # -- recorder and heartbeat -----------------------------------------------------

    async def _recorder(self) -> None:
        """Record outcomes in batches: whatever accumulated while the last write ran."""
        while True:
            if not self._outcomes:
                if self._closing:
                    return
                self._outcome_ready.clear()
                await self._outcome_ready.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            try:
                applied = await self.queue.record(self.owner, batch)
            except QueueError as exc:
                self.error = exc
                self._stopping.set()
                self._held.difference_update(o.job_id for o in batch)
                return
            self.lost_leases += len(batch) - applied
            self._held.difference_update(o.job_id for o in batch)
            for obs in self.observers:
                obs.recorded(batch)

    async def _heartbeat(self) -> None:
        interval = max(0.5, self.config.lease / 3)
        while True:
            await asyncio.sleep(interval)
            if self._held:
                with contextlib.suppress(QueueError):
                    await self.queue.extend(self.owner, list(self._held), self.config.lease)


def _transient(reply: str) -> bool:
    """A refused recipient's reply ("451 4.2.1 ...") worth trying again."""
    code = int(reply[:3]) if reply[:3].isdigit() else 0
    return classify(ReplyError(reply[4:], code=code, stage="rcpt")).action is not Action.DEAD


def _sent_reply(d: Delivery) -> str:
    if not d.refused:
        return d.reply
    refused = "; ".join(f"{r}: {why}" for r, why in d.refused.items())
    return f"{d.reply} | refused: {refused}"[:1000]
