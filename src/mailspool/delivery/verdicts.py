"""What a worker makes of a message that did not go: the outcome to record (deferred
to when, or dead and why), the relay paused on the way, the observers told.

    unexpected  neither the relay's answer nor the job's fault (the store, a defect):
                tried again on the campaign's schedule
    failed      the relay's answer, classified (delivery/classify.py): a relay-level
                failure pauses the relay and hands the job back uncharged; a
                permanent one is dead; a temporary one is deferred
    dead        dead-lettered, with its reason
    suppressed  every recipient on a suppression list: recorded, never sent
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mailspool.delivery.classify import Action, Verdict
from mailspool.delivery.inflight import InFlight, drain
from mailspool.delivery.observer import Observer
from mailspool.delivery.parking import Parking
from mailspool.delivery.relay_gate import RelayGate
from mailspool.delivery.retry import CampaignPolicies
from mailspool.errors import DeliveryError
from mailspool.models import DeadReason, Job, Outcome, State

__all__ = ["Verdicts"]


class Verdicts:
    """The outcomes of a worker's failed sends. ``buffer``: the worker's claimed jobs
    not yet taken by a sender (handed back when the relay is paused); ``flight``: which
    sends have begun (those may have been delivered); ``tell``: tells the observers."""

    def __init__(
        self,
        *,
        policies: CampaignPolicies,
        gate: RelayGate,
        parking: Parking,
        buffer: asyncio.Queue[Job | None],
        flight: InFlight,
        tell: Callable[[Callable[[Observer], object]], None],
        max_age: float,
    ) -> None:
        self.policies = policies
        self.gate = gate
        self.parking = parking
        self.buffer = buffer
        self.flight = flight
        self.tell = tell
        self.max_age = max_age

    def unexpected(self, job: Job, exc: Exception) -> Outcome:
        """Not the relay's answer nor the job's fault: try again on the usual schedule."""
        reply = f"{type(exc).__name__}: {exc}"[:1000]
        decision = self.policies.next_attempt(job)
        begun = job.id in self.flight.begun  # its transaction began: the relay may have it
        if isinstance(decision, DeadReason):
            return self.dead(job, decision, reply, begun)
        return Outcome(job.id, State.DEFERRED, reply, decision, ambiguous=begun)

    def failed(
        self, job: Job, err: DeliveryError, verdict: Verdict, elapsed: float
    ) -> Outcome | None:
        """The outcome of the relay's refusal ``err``; None when the job was handed back
        (the relay paused, nothing charged)."""
        if verdict.action is Action.PAUSE:
            pauses = self.gate.pauses
            delay = self.gate.pause(err)
            self.parking.park(drain(self.buffer))
            if self.gate.pauses != pauses:  # tell once per pause, not once per sender
                self.tell(lambda obs: obs.relay_paused(err, delay))
        if verdict.action is Action.DEAD:
            assert verdict.reason is not None
            return self.dead(job, verdict.reason, err.reply, verdict.ambiguous)
        now = time.time()
        if verdict.action is Action.PAUSE:
            # the relay's fault, not the job's: handed back (the claim's attempt not
            # counted), due when the relay is expected back
            reopen = now + max(1.0, self.gate.remaining())
            if reopen - job.created_at > self.max_age:
                return self.dead(job, DeadReason.EXPIRED, err.reply, verdict.ambiguous)
            self.tell(lambda obs: obs.deferred(job, err, verdict, reopen, elapsed))
            if not verdict.ambiguous:
                self.parking.park([job.id])
                return None
            return Outcome(job.id, State.DEFERRED, err.reply, reopen, ambiguous=True)
        next_try = self.policies.next_attempt(job, now)
        if isinstance(next_try, DeadReason):
            return self.dead(job, next_try, err.reply, verdict.ambiguous)
        self.tell(lambda obs: obs.deferred(job, err, verdict, next_try, elapsed))
        return Outcome(job.id, State.DEFERRED, err.reply, next_try, ambiguous=verdict.ambiguous)

    def dead(self, job: Job, reason: DeadReason, reply: str, ambiguous: bool = False) -> Outcome:
        self.tell(lambda obs: obs.dead(job, reason, reply))
        return Outcome(job.id, State.DEAD, reply, reason=reason.value, ambiguous=ambiguous)

    def suppressed(self, job: Job) -> Outcome:
        self.tell(lambda obs: obs.suppressed(job))
        reply = f"suppressed: {', '.join(job.recipients)}"[:1000]
        return Outcome(job.id, State.SUPPRESSED, reply)
