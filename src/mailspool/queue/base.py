"""The queue interface every backend implements, grouped by the roles its callers use.

A backend is both the queue (claim with a lease, hand back, retry later) and the job
store (state, attempts, last reply, the sent ledger, dead letters, blobs). Backends that
split the two (RabbitMQ plus a :class:`~mailspool.queue.store.JobStore`) implement the
same interface. Callers type their parameters against a role
(:mod:`mailspool.queue.roles`): Enqueuing, Claiming, LeaseAdmin, Inspection,
DeadLetterAdmin, Blobs, CampaignSettings, CampaignControl; :class:`Queue` declares the
methods of every role, grouped and commented by role.

Leases: ``claim`` marks jobs ``sending`` for ``owner`` until ``now + lease``; a job whose
lease expires is claimable again. ``record`` only applies outcomes for jobs whose lease
``owner`` still holds, so a worker that lost its lease can never overwrite another's
result; it returns how many it applied.

Ambiguous deliveries: a job whose lease expired (or whose dead owner's leases were
released) may have been delivered by the worker that held it; claiming it again counts
one ambiguous delivery, as does an outcome recorded with ``ambiguous=True`` (a hang-up
or timeout after the final dot). Stats report the sum: duplicates never exceed it.

Campaign control: ``claim`` hands out no job of a paused campaign. A cancelled
campaign's queued and deferred jobs are made ``cancelled`` by ``set_campaign_state``
(in one transaction where the backend allows); a job of it claimed all the same (one
leased before the cancel whose lease expired, one queued to it later) is the worker's to
record ``cancelled`` (mailspool.delivery.campaigns).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.events import EventLog
from mailspool.queue.suppression import SuppressionList

if TYPE_CHECKING:  # returned mail: what inbound commands use, imported by them
    from mailspool.queue.returns import ReturnLog

#: ready() reads this campaign's stats: cheap, and no campaign has this name (one starts
#: with a letter or digit); no NUL either, which PostgreSQL refuses in text
READY_PROBE_CAMPAIGN = ".readyz"


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead letters a call of the dead-letter roles means; every field given must
    match. ``campaign``: its name; ``reason``: the ``dead_reason`` (``rejected_permanent``,
    ``too_large``, ...); ``since``: died at or after this Unix time; ``ids``: one of
    these job ids. The default, no field given, matches every dead letter."""

    campaign: str | None = None
    reason: str | None = None
    since: float | None = None
    ids: tuple[str, ...] = ()


class Queue(abc.ABC):
    """A queue with its job state: what every backend implements, and what a command that
    does everything (``send``, ``worker``, the API service) holds. Made by
    :func:`mailspool.queue.make_queue` from a URL, not yet opened: ``async with queue:``
    opens and closes it. The abstract methods are grouped by role below; the roles'
    Protocols (:mod:`mailspool.queue.roles`) are what narrower callers type against."""

    #: the URL it was opened with, secrets redacted
    url: str = ""
    #: stores messages packed (mailspool.queue.packing): ``enqueue`` takes a Packed message as
    #: it is, so a producer may pack in its render processes
    packs_messages: bool = False

    @classmethod
    def from_url(cls, url: str, store: str | None) -> Queue:
        """The queue for ``url`` (its scheme is this class's), not yet opened; ``store``
        is for queues that keep job state apart (RabbitMQ)."""
        return cls(url)  # type: ignore[call-arg]  # overridden where the signature differs

    @classmethod
    def packs_for(cls, store: str | None) -> bool:
        """``packs_messages`` of the queue ``from_url`` would make with ``store``."""
        return cls.packs_messages

    # -- suppressions: who must not be mailed (queue/suppression.py) ----------------------

    @property
    def suppressions(self) -> SuppressionList:
        """The suppression list kept beside the jobs, in the same database, sharing the
        queue's connection (RabbitMQ: its job store's)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no suppression list")

    # -- returns: bounces and complaints recorded on jobs (queue/returns.py) ------------

    @property
    def returns(self) -> ReturnLog:
        """Returned mail kept beside the jobs, in the same database, sharing the queue's
        connection (RabbitMQ: its job store's)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no returned mail")

    # -- events: what happened to jobs, for webhooks and pollers (queue/events.py) ------

    @property
    def events(self) -> EventLog:
        """The job events written with the outcomes that cause them, and each webhook
        endpoint's delivery state, in the same database (RabbitMQ: its job store's)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no events")

    # -- opening and closing: defaults for a queue with nothing to connect --------------

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create what is missing (tables, groups)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; the queue cannot be used again."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self, timeout: float) -> bool:
        """Whether the queue can take and hand out jobs now (for /readyz): its job store
        answers a read within ``timeout``; a queue that also needs a broker connection
        says whether that is up too."""
        async with asyncio.timeout(timeout):
            await self.stats(READY_PROBE_CAMPAIGN)
        return True

    # -- Enqueuing (and Claiming: a worker queues the retry of refused recipients) ------

    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
        """Add jobs; a job whose id exists already is not added again. One result per job.

        A job offered in state SUPPRESSED (every recipient on the suppression list) is
        stored final: never claimable, counted as ``suppressed``; its result is
        ``Enqueued.SUPPRESSED`` (see :func:`added`). Any other state offered is ignored:
        the job is queued, or deferred until its ``not_before``."""

    # -- Claiming -----------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs (queued, deferred past ``not_before``, or with an
        expired lease), incrementing their attempts; none of a paused campaign."""

    @abc.abstractmethod
    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Apply outcomes of leases ``owner`` still holds; returns how many were applied.
        SENT, DEAD, SUPPRESSED and CANCELLED are final (a suppressed job keeps the reply,
        and no dead reason: :func:`final_reason`); DEFERRED is due again at
        ``not_before``. A CANCELLED outcome writes no job event."""

    @abc.abstractmethod
    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        """Heartbeat: push the lease of ``owner``'s jobs to ``now + lease``."""

    @abc.abstractmethod
    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None:
        """Hand leased jobs back, not counting the attempt; due at once or at ``not_before``.

        ``reply`` (a paused relay's answer) becomes the jobs' last reply, so that status
        says why they wait."""

    # -- LeaseAdmin ---------------------------------------------------------------------

    @abc.abstractmethod
    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        """Owners currently holding leases (to reclaim those of workers known to be dead)."""

    @abc.abstractmethod
    async def release_owner(self, owner: str) -> int:
        """Hand back every lease of a worker known to be dead; returns how many."""

    # -- Inspection ---------------------------------------------------------------------

    @abc.abstractmethod
    async def stats(self, campaign: str | None = None) -> CampaignStats:
        """Jobs per state, ambiguous deliveries, when the next is due and the last error,
        of ``campaign`` or of every campaign."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job, or None when there is none with that id."""

    @abc.abstractmethod
    async def campaigns(self) -> list[str]:
        """Every campaign with a job, by name."""

    # -- DeadLetterAdmin ----------------------------------------------------------------

    @abc.abstractmethod
    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        """Dead letters matching ``flt``, those that died first first."""

    @abc.abstractmethod
    async def retry_dead(self, flt: DeadFilter) -> int:
        """Queue matching dead letters again (same id, key and Message-ID); returns count."""

    @abc.abstractmethod
    async def purge_dead(self, flt: DeadFilter) -> int:
        """Delete matching dead letters; returns how many."""

    # -- Blobs (Enqueuing puts, Claiming gets) -------------------------------------------

    @abc.abstractmethod
    async def put_blob(self, digest: str, data: bytes) -> None:
        """Store content shared by many jobs (an attachment) once."""

    @abc.abstractmethod
    async def get_blob(self, digest: str) -> bytes | None:
        """The content stored under ``digest``, or None."""

    # -- CampaignSettings (Enqueuing sets, Claiming gets) --------------------------------
    # Backends that can share them between processes override both; the default keeps
    # them in this process only.

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        """Replace the campaign's settings (JSON-serialisable)."""
        self._campaign_settings()[campaign] = dict(settings)

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        """The campaign's settings; empty when none were set."""
        return dict(self._campaign_settings().get(campaign, {}))

    # -- CampaignControl (and Claiming reads the states) ------------------------------

    @abc.abstractmethod
    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange:
        """Pause, resume (ACTIVE) or cancel the campaign; doing it twice changes nothing.
        A cancelled campaign stays so (the change says what it is in). Cancelling also
        makes its queued and deferred jobs CANCELLED: final, never claimed; the change
        counts them."""

    @abc.abstractmethod
    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        """The states of ``campaigns`` that are not active (None: of every campaign that
        is not); one missing from the answer is active."""

    def _campaign_settings(self) -> dict[str, dict[str, Any]]:
        store: dict[str, dict[str, Any]] | None = getattr(self, "_local_campaign_settings", None)
        if store is None:
            store = {}
            self._local_campaign_settings = store
        return store


def resumed(existing_row: int, existing_state: str, row: int) -> Enqueued:
    """Classify an id that exists already: the same row of an earlier run (resume) or
    another row with the same key (a duplicate within the campaign)."""
    if existing_row != row:
        return Enqueued.DUPLICATE
    if existing_state == State.SENT.value:
        return Enqueued.SENT
    if existing_state == State.DEAD.value:
        return Enqueued.DEAD
    if existing_state == State.SUPPRESSED.value:
        return Enqueued.SUPPRESSED
    if existing_state == State.CANCELLED.value:
        return Enqueued.CANCELLED
    return Enqueued.PENDING


def added(job: Job) -> Enqueued:
    """The result for a job this call stored: NEW, or SUPPRESSED for one offered so."""
    return Enqueued.SUPPRESSED if job.state is State.SUPPRESSED else Enqueued.NEW


def final_reason(outcome: Outcome) -> str:
    """The dead reason an outcome stores: none for a suppressed job (never dead)."""
    return "" if outcome.state is State.SUPPRESSED else outcome.reason
