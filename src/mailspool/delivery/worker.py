"""The worker: claim due jobs, send each through the transport, record the outcome.

    feeder     claims batches under a lease while the local buffer runs low, and checks
               each batch's recipients against the suppression list (one query per
               list for the whole batch): suppressed recipients leave the envelope, a
               job left with none is recorded SUPPRESSED and never sent
    senders    ``concurrency`` tasks: rate limit, relay gate, send, decide the outcome
    recorder   writes outcomes in batches (mailspool.delivery.recorder); senders wait while more
               than ``2 * concurrency`` outcomes are not yet durable, so a crash can leave
               at most ``3 * concurrency`` messages delivered but unrecorded (the
               duplicate window)
    heartbeat  extends the leases of every job held here, so a slow send is never
               handed to a second worker
    campaigns  a paused campaign's jobs are handed back, a cancelled one's recorded
               CANCELLED: checked at claim, when a sender takes one and just before it
               goes out (mailspool.delivery.campaigns)

Observers (progress, logs, metrics) are told about each outcome; none of that lives in
the loop itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from mailspool.delivery.assemble import Assembler
from mailspool.delivery.campaigns import CampaignGate, CampaignHalted
from mailspool.delivery.classify import classify
from mailspool.delivery.inflight import InFlight, drain, stop_senders
from mailspool.delivery.leases import keep_leases, make_owner
from mailspool.delivery.limits import Limits, LocalLimits, NoLimits
from mailspool.delivery.observer import Observer
from mailspool.delivery.outcomes import interrupted, sent_outcome
from mailspool.delivery.parking import Parking
from mailspool.delivery.published import publish_states
from mailspool.delivery.recorder import Recorder
from mailspool.delivery.relay_gate import RelayGate
from mailspool.delivery.retry import CampaignPolicies
from mailspool.delivery.screen import Screen
from mailspool.delivery.shaped import admitted, envelope_for
from mailspool.delivery.shaping import Shaper
from mailspool.delivery.verdicts import Verdicts
from mailspool.delivery.windows import SendWindows
from mailspool.delivery.worker_config import ClaimingSuppressing, WorkerConfig
from mailspool.errors import DeliveryError, MailspoolError, QueueError
from mailspool.models import DeadReason, Job, Outcome, State
from mailspool.tasks import cancel_and_wait
from mailspool.transport.base import Transport

__all__ = ["ClaimingSuppressing", "Worker", "WorkerConfig"]

log = logging.getLogger(__name__)

#: seconds the outcomes of a worker stopped at once (stop_now) may take to be recorded
QUIT_GRACE = 5.0


class Worker:
    """Delivers the jobs of ``queue`` through ``transport`` (which it closes when it
    stops) until stopped (:meth:`stop`) or idle (:meth:`run`).

    ``config``: how (WorkerConfig); ``observers``: told of every outcome (progress,
    logs, metrics, tracing); ``limits``: limits shared with other workers (several
    loops of one process, or a cluster through Redis); without them the worker holds
    its own from ``config.limits``.
    """

    def __init__(
        self,
        *,
        queue: ClaimingSuppressing,
        transport: Transport,
        config: WorkerConfig | None = None,
        observers: Sequence[Observer] = (),
        limits: Limits | None = None,
        shaper: Shaper | None = None,
    ) -> None:
        config = config or WorkerConfig()
        self.queue = queue
        self.transport = transport
        self.config = config
        self.owner = make_owner()
        self.observers = list(observers)
        # limits shared across processes are passed in; otherwise this process holds them
        self.limits: Limits = limits or (
            LocalLimits(config.limits) if config.limits.any else NoLimits()
        )
        self.gate = RelayGate()
        self._buffer: asyncio.Queue[Job | None] = asyncio.Queue()
        self._held: set[str] = set()
        self.recorder = Recorder(
            queue=queue,
            owner=self.owner,
            cap=2 * max(1, config.concurrency),
            grace=config.shutdown_grace,
            settled=self._settled,
            fail=self._fail,
        )
        self.flight = InFlight()
        self._senders: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.policies = CampaignPolicies(queue, config.retry)
        self.parking = Parking(
            queue=queue, owner=self.owner, gate=self.gate, released=self._held.difference_update
        )
        self.campaigns = CampaignGate(
            queue=queue, parking=self.parking, recorder=self.recorder, tell=self._tell
        )
        self.assembler = Assembler(queue)
        self._again: set[str] = set()  # throttled by their provider: to be admitted again
        self.screen = Screen(queue)
        self.windows = SendWindows(queue)
        self.shaper = shaper
        if shaper is not None:
            shaper.requeue = self._buffer.put_nowait
        self.verdicts = Verdicts(
            policies=self.policies,
            gate=self.gate,
            parking=self.parking,
            buffer=self._buffer,
            flight=self.flight,
            tell=self._tell,
            max_age=config.retry.max_age,
        )
        self.error: BaseException | None = None

    # -- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; messages whose transaction has begun finish (within the shutdown
        grace); the rest (buffered, or waiting for a slot or a connection) is handed
        back untried, never sent after the stop (inflight.py)."""
        self._stopping.set()
        self.flight.call_off()

    def stop_now(self) -> None:
        """As :meth:`stop`, without waiting: messages whose transaction has begun are cut
        short too, recorded as interrupted (possibly delivered); outcomes the store does
        not take within QUIT_GRACE seconds are given up (their leases lapse)."""
        self.recorder.grace = min(self.recorder.grace, QUIT_GRACE)
        self.stop()
        for task in self._senders:
            task.cancel()

    @property
    def busy(self) -> bool:
        return bool(self._held or self.flight)

    async def run(self, idle: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Run until stopped, or until ``idle()`` (asked when nothing is due) says so."""
        senders = self._senders = [
            self._task(self._sender()) for _ in range(self.config.concurrency)
        ]
        recorder = self._task(self.recorder.run())
        background = [
            self._task(keep_leases(self.queue, self.owner, self._held, self.config.lease)),
            self._task(self.campaigns.run()),
            *([self._task(self.shaper.run())] if self.shaper is not None else []),
        ]
        background.append(
            asyncio.create_task(publish_states(self.queue, self.owner, self.transport, self.shaper))
        )
        try:
            await self._feeder(idle)
        except QueueError as exc:
            self._fail(exc)
        finally:
            # each step runs whatever happened in the one before it; what nothing will send
            # goes back first, not after the grace (a kill then would leave it leased)
            await self._step(self._release_unsent(self._untried()))
            grace = self.config.shutdown_grace if self._stopping.is_set() else None
            await self._step(stop_senders(senders, self._buffer, grace))
            await self.parking.settle()
            self.recorder.close()
            await self._step(recorder)
            await cancel_and_wait(background)
            await self._step(
                publish_states(self.queue, self.owner, self.transport, self.shaper, once=True)
            )
            if self.shaper is not None:  # what it holds is still ours: handed back below
                await self.shaper.close()
            await self._step(self._release_unsent(set(self._held)))
            await self._step(self.transport.close())
        if self.error is not None:
            raise self.error

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task whose unexpected death stops the worker instead of leaving it hanging."""
        task = asyncio.create_task(coro)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self._fail(t.exception())

        task.add_done_callback(done)
        return task

    def _fail(self, exc: BaseException | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self.stop()

    async def _step(self, aw: Awaitable[None]) -> None:
        try:
            await aw
        except Exception as exc:
            log.exception("worker shutdown step failed")
            self._fail(exc)

    def _tell(self, call: Callable[[Observer], object]) -> None:
        """Tell every observer; a failing observer must not stop delivery."""
        for obs in self.observers:
            try:
                call(obs)
            except Exception:
                log.exception("observer %s failed", type(obs).__name__)

    def _untried(self) -> set[str]:
        """What a stop leaves untried: sends called off, the buffer, what shaping holds."""
        shaped = self.shaper.release_all() if self.shaper is not None else []
        ids = self.flight.called_off | set(drain(self._buffer)) | {j.id for j in shaped}
        return ids - self.flight.begun

    async def _release_unsent(self, ids: set[str]) -> None:
        """Hand back at once (no waiting for lease expiry) jobs claimed but not tried."""
        if ids := ids & self._held:
            with contextlib.suppress(QueueError):  # else kept: tried again at the end
                await self.queue.release(self.owner, sorted(ids))
                self._held.difference_update(ids)

    # -- feeder -------------------------------------------------------------------

    async def _feeder(self, idle: Callable[[], Awaitable[bool]] | None) -> None:
        batch = self.config.claim_batch
        wait = self.config.poll_interval
        while not self._stopping.is_set():
            if self.recorder.failing:  # claim nothing until the outcomes are durable
                await self._sleep(self.config.poll_interval)
                continue
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
            await self.policies.load(j.campaign for j in jobs)
            for job in jobs:
                self._held.add(job.id)
            jobs = await self._in_window(await self.campaigns.admit(jobs))
            for job in await self._screen(jobs):
                self._buffer.put_nowait(job)
            if jobs:
                wait = 0.01
                continue
            if not self.busy and idle is not None and await idle():
                return
            await self._sleep(wait)
            wait = min(self.config.poll_interval, wait * 2)

    async def _in_window(self, jobs: list[Job]) -> list[Job]:
        """The claimed jobs inside their send windows (the others are handed back)."""
        send, released = await self.windows.hand_back(self.queue, self.owner, jobs)
        self._held.difference_update(released)
        return send

    async def _screen(self, jobs: list[Job]) -> list[Job]:
        """The claimed jobs to send (screen.py); those left with no recipient are recorded
        SUPPRESSED. When the store cannot answer, the batch is retried on the usual
        schedule, never sent unchecked."""
        try:
            send, suppressed = await self.screen.check(jobs)
        except QueueError as exc:
            for job in jobs:
                self.recorder.add(self.verdicts.unexpected(job, exc))
            return []
        for job in suppressed:
            self.recorder.add(self.verdicts.suppressed(job))
        return send

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- senders ------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            job = await self._buffer.get()
            if job is None:
                return
            if not await self._goes_now(job):
                continue
            self.flight.add(job.id)  # a stop before its transaction begins calls it off
            outcome: Outcome | None = None
            try:
                outcome = await self._attempt(job)
            except asyncio.CancelledError:
                if job.id in self.flight.begun:  # the relay may have it: never untried
                    self.recorder.add(interrupted(job))
                raise  # else still held: handed back untried by _release_unsent
            except Exception as exc:  # a defect here must not lose the job nor the sender
                log.exception("unexpected error sending job %s", job.id)
                outcome = self.verdicts.unexpected(job, exc)
            finally:
                self.flight.discard(job.id)
                self.screen.dropped.pop(job.id, None)
                if self.shaper is not None:
                    self.shaper.done(
                        job.id, sent=outcome is not None and outcome.state is State.SENT
                    )
            if outcome is not None:
                self.recorder.add(outcome)
            elif job.id in self._again:  # throttled: admitted again once its slot is freed
                self._again.discard(job.id)
                self._buffer.put_nowait(job)

    async def _goes_now(self, job: Job) -> bool:
        """Whether a job taken from the buffer is tried now; if not, it is left for
        _release_unsent, handed back, held by its provider's shaping or recorded."""
        if self._stopping.is_set():
            return False  # still held: handed back by _release_unsent
        if self.gate.paused:
            self.parking.park([job.id, *drain(self._buffer)])
            return False
        if self.campaigns.stops(job):  # paused or cancelled since it was claimed
            return False
        return self.shaper is None or await admitted(self.shaper, self.parking, job)

    async def _attempt(self, job: Job) -> Outcome | None:
        """Send one job; its outcome, or None when it was handed back (relay paused) or
        is still held, untried (stopped while it was admitted)."""
        if self._stopping.is_set():
            return None
        await self.recorder.room()
        began = time.monotonic()
        try:
            data = await self.assembler.message(job)
        except QueueError as exc:  # the store is unreachable, the job is fine
            return self.verdicts.unexpected(job, exc)
        except MailspoolError as exc:
            return self.verdicts.dead(job, DeadReason.INVALID_MESSAGE, str(exc))
        prepared = time.monotonic() - began
        self._tell(lambda obs: obs.prepared(prepared))
        return await self._send(job, data)

    async def _send(self, job: Job, data: bytes) -> Outcome | None:
        domain = job.domain
        started = time.monotonic()
        acquired = False

        async def ready() -> None:
            # the slot is taken once the connection is open: a new connection's set-up
            # must not delay this message into the next one's slot
            nonlocal acquired, started
            waited = await self.limits.acquire(domain)
            acquired = True
            self.campaigns.check(job)  # the last moment: paused or cancelled meanwhile?
            if waited:
                self._tell(lambda obs: obs.rate_limited(waited))
            started = time.monotonic()

        envelope = envelope_for(job, data, self.shaper, lambda: self.flight.begin(job.id))
        try:
            delivery = await self.transport.send(envelope, ready)
        except CampaignHalted:
            return self.campaigns.halted(job)
        except DeliveryError as err:
            if self.shaper is not None and self.shaper.slows(job.id, err):
                return await self._throttled(job, err)
            return self.verdicts.failed(job, err, classify(err), time.monotonic() - started)
        finally:
            if acquired:
                self.limits.release(domain)
        self.gate.success()
        self._tell(lambda obs: obs.sent(job, delivery, time.monotonic() - started))
        dropped = self.screen.dropped.get(job.id)
        return await sent_outcome(self.queue, self.policies, job, delivery, dropped)

    async def _throttled(self, job: Job, err: DeliveryError) -> Outcome | None:
        """A reply from the job's provider meaning "too fast": its rate is cut and the
        job admitted again like a new one, still leased here, no attempt charged (it was
        not accepted); past its maximum age it is dead-lettered as expired. The relay is
        not to blame: never paused for it."""
        assert self.shaper is not None
        provider = await self.shaper.throttled(job.id, err) or ""
        self._tell(lambda obs: obs.throttled(job, provider, err))
        if time.time() - job.created_at > self.config.retry.max_age:
            return self.verdicts.dead(job, DeadReason.EXPIRED, err.reply)
        self._again.add(job.id)
        return None

    # -- recorded outcomes ----------------------------------------------------------

    def _settled(self, batch: list[Outcome], recorded: bool) -> None:
        self._held.difference_update(o.job_id for o in batch)
        if recorded:
            self._tell(operator.methodcaller("recorded", batch))
