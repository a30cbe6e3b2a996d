"""An in-memory queue with the same semantics as the durable ones. Nothing survives the
process: for tests and for dry runs (``memory://``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.base import DeadFilter, Queue, added, final_reason, resumed
from mailspool.queue.events import EventLog, EventType, MemoryEventLog
from mailspool.queue.returns import MemoryReturnLog
from mailspool.queue.suppression import MemorySuppressionList

_CLAIMABLE = (State.DEFERRED, State.QUEUED, State.SENDING)


class MemoryQueue(Queue):
    """Every role of :class:`Queue` in this process's memory (``memory://``): for tests
    and dry runs; nothing survives the process, and no other process sees its jobs. It
    takes no arguments."""

    @classmethod
    def from_url(cls, url: str, store: str | None) -> Queue:
        return cls()

    @property
    def suppressions(self) -> MemorySuppressionList:
        return self._suppressions

    @property
    def returns(self) -> MemoryReturnLog:
        return self._returns

    @property
    def events(self) -> EventLog:
        return self._events

    def __init__(self) -> None:
        self.url = "memory://"
        self._events = MemoryEventLog()
        self._suppressions = MemorySuppressionList(self._events)
        self.jobs: dict[str, Job] = {}
        self._returns = MemoryReturnLog(self.jobs, self._events)
        self.blobs: dict[str, bytes] = {}
        self._ready_at: dict[str, float] = {}
        self._ambiguous: dict[str, int] = {}
        self._control: dict[str, CampaignState] = {}  # the campaigns not active

    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
        now = time.time()
        out = []
        for j in jobs:
            old = self.jobs.get(j.id)
            if old is not None:
                out.append(resumed(old.row, old.state.value, j.row))
                continue
            if j.state is State.SUPPRESSED:
                state = State.SUPPRESSED
            else:
                state = State.DEFERRED if j.not_before > now else State.QUEUED
            job = dataclasses.replace(j, state=state, created_at=j.created_at or now)
            job.updated_at = now
            self.jobs[j.id] = job
            if state is State.SUPPRESSED:
                self._event(EventType.SUPPRESSED, job)
            self._ready_at[j.id] = j.not_before or job.created_at
            out.append(added(j))
        return out

    def _due(self, campaign: str | None, now: float) -> list[Job]:
        return [
            j
            for j in self.jobs.values()
            if j.state in _CLAIMABLE
            and self._ready_at[j.id] <= now
            and (campaign is None or j.campaign == campaign)
            and self._control.get(j.campaign) is not CampaignState.PAUSED
        ]

    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]:
        now = time.time()
        out = []
        for j in self._due(campaign, now)[:limit]:
            if j.state is State.SENDING:  # an expired lease: may have been delivered
                self._ambiguous[j.id] = self._ambiguous.get(j.id, 0) + 1
                self._event(EventType.AMBIGUOUS, j)
            j.state, j.lease_owner, j.attempts, j.updated_at = (
                State.SENDING,
                owner,
                j.attempts + 1,
                now,
            )
            self._ready_at[j.id] = now + lease
            out.append(dataclasses.replace(j))
        return out

    def _held(self, owner: str, job_id: str) -> Job | None:
        j = self.jobs.get(job_id)
        if j is None or j.state is not State.SENDING or j.lease_owner != owner:
            return None
        return j

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        now = time.time()
        applied = 0
        for o in outcomes:
            j = self._held(owner, o.job_id)
            if j is None:
                continue
            j.state, j.last_reply, j.updated_at = o.state, o.reply, now
            j.dead_reason = final_reason(o)
            j.lease_owner = ""
            j.not_before = o.not_before if o.state is State.DEFERRED else 0.0
            self._ready_at[j.id] = o.not_before if o.state is State.DEFERRED else now
            self._ambiguous[j.id] = self._ambiguous.get(j.id, 0) + int(o.ambiguous)
            if o.state is not State.CANCELLED:  # no event: webhooks know no such type
                self._event(EventType(o.state.value), j)
            if o.ambiguous:
                self._event(EventType.AMBIGUOUS, j)
            applied += 1
        return applied

    def _event(self, type_: EventType, j: Job) -> None:
        self._events.append(
            type_, at=j.updated_at, job_id=j.id, campaign=j.campaign,
            recipients=j.recipients, detail=j.last_reply, reason=j.dead_reason,
            attempts=j.attempts,
        )  # fmt: skip

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        until = time.time() + lease
        for jid in job_ids:
            if self._held(owner, jid) is not None:
                self._ready_at[jid] = until

    def _hand_back(self, j: Job, now: float, not_before: float | None = None) -> None:
        j.state = State.DEFERRED if j.attempts > 1 or not_before else State.QUEUED
        j.lease_owner = ""
        j.not_before = not_before or 0.0
        self._ready_at[j.id] = not_before or now

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None:
        now = time.time()
        for jid in job_ids:
            j = self._held(owner, jid)
            if j is not None:
                j.attempts -= 1
                if reply is not None:
                    j.last_reply = reply
                self._hand_back(j, now, not_before)

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        return sorted(
            {
                j.lease_owner
                for j in self.jobs.values()
                if j.state is State.SENDING and (campaign is None or j.campaign == campaign)
            }
        )

    async def release_owner(self, owner: str) -> int:
        now = time.time()
        held = [
            j for j in self.jobs.values() if j.state is State.SENDING and j.lease_owner == owner
        ]
        for j in held:
            self._ambiguous[j.id] = self._ambiguous.get(j.id, 0) + 1
            self._hand_back(j, now)
        return len(held)

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        st = CampaignStats(campaign)
        for j in self.jobs.values():
            if campaign is None or j.campaign == campaign:
                st.counts[j.state.value] = st.counts.get(j.state.value, 0) + 1
                st.ambiguous += self._ambiguous.get(j.id, 0)
                if j.state in _CLAIMABLE:
                    due = self._ready_at[j.id]
                    st.next_due = due if st.next_due is None else min(st.next_due, due)
        deferred = [j for j in self.jobs.values() if j.state is State.DEFERRED and j.last_reply]
        deferred = [j for j in deferred if campaign is None or j.campaign == campaign]
        if deferred:
            st.last_error = max(deferred, key=lambda j: self._ready_at[j.id]).last_reply
        return st

    async def get(self, job_id: str) -> Job | None:
        j = self.jobs.get(job_id)
        return dataclasses.replace(j) if j else None

    async def put_blob(self, digest: str, data: bytes) -> None:
        self.blobs.setdefault(digest, data)

    async def get_blob(self, digest: str) -> bytes | None:
        return self.blobs.get(digest)

    async def campaigns(self) -> list[str]:
        return sorted({j.campaign for j in self.jobs.values()})

    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange:
        if self._control.get(campaign) is CampaignState.CANCELLED:
            return CampaignChange(CampaignState.CANCELLED)
        if state is CampaignState.ACTIVE:
            self._control.pop(campaign, None)
            return CampaignChange(state)
        self._control[campaign] = state
        if state is not CampaignState.CANCELLED:
            return CampaignChange(state)
        now, n = time.time(), 0
        for j in self.jobs.values():
            if j.campaign == campaign and j.state in (State.QUEUED, State.DEFERRED):
                j.state, j.updated_at, j.not_before = State.CANCELLED, now, 0.0
                n += 1
        return CampaignChange(state, n)

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        if campaigns is None:
            return dict(self._control)
        return {c: self._control[c] for c in campaigns if c in self._control}

    def _dead(self, flt: DeadFilter) -> list[Job]:
        return [
            j
            for j in self.jobs.values()
            if j.state is State.DEAD
            and (flt.campaign is None or j.campaign == flt.campaign)
            and (flt.reason is None or j.dead_reason == flt.reason)
            and (flt.since is None or j.updated_at >= flt.since)
            and (not flt.ids or j.id in flt.ids)
        ]

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        return [dataclasses.replace(j) for j in self._dead(flt)[:limit]]

    async def retry_dead(self, flt: DeadFilter) -> int:
        now = time.time()
        dead = self._dead(flt)
        for j in dead:
            j.state, j.attempts, j.dead_reason, j.updated_at = State.QUEUED, 0, "", now
            self._ready_at[j.id] = now
        return len(dead)

    async def purge_dead(self, flt: DeadFilter) -> int:
        dead = self._dead(flt)
        for j in dead:
            del self.jobs[j.id]
        return len(dead)
