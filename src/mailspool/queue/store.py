"""The job store interface, for queues that keep job state apart from the broker.

A broker such as RabbitMQ moves messages but cannot answer "what state is job X in", list
dead letters or count a campaign. A :class:`JobStore` holds all of that: each job's state,
attempts, last reply and lease, the sent ledger, dead letters, blobs. The broker-backed
queue (:mod:`mailspool.queue.rabbitmq.queue`) hands out job ids; the store decides, under a
lease, which worker may send which job. It is the source of truth: whatever the broker
loses or delivers twice, a job is claimed only when the store says it is due.

The semantics are those of the SQLite queue (see :mod:`mailspool.queue.base`): a claim
increments ``attempts`` and leases the job to ``owner`` until ``now + lease``; outcomes
apply only while ``owner`` holds the lease; a handed-back job is ``queued`` (first
attempt) or ``deferred``. No claim hands out a job of a paused campaign: the broker's
messages for one are acknowledged unclaimed, and its resume returns its due jobs for the
broker to announce again.
"""

from __future__ import annotations

import abc
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
from mailspool.queue.base import DeadFilter
from mailspool.queue.events import EventLog
from mailspool.queue.suppression import SuppressionList
from mailspool.urls import Plugins

if TYPE_CHECKING:
    from mailspool.queue.returns import ReturnLog

#: states a job can be claimed from (``sending`` once its lease has expired)
CLAIMABLE: tuple[State, ...] = (State.QUEUED, State.DEFERRED, State.SENDING)


@dataclass(frozen=True, slots=True)
class Ref:
    """A job the store made due, for the broker to announce: its ``id`` and ``campaign``
    (an announcement names jobs of one campaign)."""

    id: str
    campaign: str


class JobStore(abc.ABC):
    """Job state for a queue that cannot hold it (see the module docstring). Made by
    :func:`mailspool.queue.make_store` from a URL, not yet opened: ``async with store:``
    opens and closes it. The abstract methods are grouped by role below, as the queue's
    are (:mod:`mailspool.queue.roles`: StoreEnqueuing, StoreClaiming, StoreLeaseAdmin,
    Inspection, StoreDeadLetterAdmin, Blobs, CampaignSettings, StoreCampaignControl)."""

    #: the URL it was opened with, secrets redacted
    url: str = ""
    #: stores messages packed, as Queue.packs_messages
    packs_messages: bool = False

    @property
    def suppressions(self) -> SuppressionList:
        """The suppression list kept in this store (a table, or keys under its prefix)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no suppression list")

    @property
    def returns(self) -> ReturnLog:
        """Returned mail kept in this store (tables, or keys under its prefix)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no returned mail")

    @property
    def events(self) -> EventLog:
        """Job events and webhook delivery state kept in this store (queue/events.py)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no events")

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        """The store for ``url`` (its scheme is this class's), not yet opened."""
        return cls(url)  # type: ignore[call-arg]  # each concrete store takes its URL

    # -- opening and closing: defaults for a store with nothing to connect --------------

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create the tables when they are missing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; the store cannot be used again."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- StoreEnqueuing -----------------------------------------------------------------

    @abc.abstractmethod
    async def insert(self, jobs: Sequence[Job]) -> tuple[list[Enqueued], list[Ref]]:
        """Add jobs whose id is new: one result per job (as ``Queue.enqueue``), and those
        of the jobs added that are due now (a job with a later ``not_before`` is added
        ``deferred``; one offered SUPPRESSED is stored final, never due)."""

    # -- StoreClaiming ------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_ids(
        self, owner: str, ids: Sequence[str], lease: float, campaign: str | None
    ) -> list[Job]:
        """Lease those of ``ids`` that are due (and in ``campaign``), as ``Queue.claim``:
        none of a paused campaign."""

    @abc.abstractmethod
    async def claim_due(
        self,
        owner: str,
        limit: int,
        lease: float,
        campaign: str | None,
        states: Sequence[State],
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs in ``states``, oldest due first (none of a
        paused campaign)."""

    @abc.abstractmethod
    async def has_due(self, campaign: str | None, states: Sequence[State]) -> bool:
        """Whether a job in ``states`` (and in ``campaign``) is due now, a paused
        campaign's not counted."""

    @abc.abstractmethod
    async def exists(self, campaign: str) -> bool:
        """Whether the campaign has any job, in any state."""

    @abc.abstractmethod
    async def queued(self, job_ids: Sequence[str]) -> list[Ref]:
        """Those of ``job_ids`` that are queued (or deferred) and due now."""

    @abc.abstractmethod
    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """As ``Queue.record``."""

    @abc.abstractmethod
    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        """As ``Queue.extend``."""

    @abc.abstractmethod
    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> list[Ref]:
        """Hand back leased jobs (not counting the attempt), ``reply`` as their last reply
        when given; returns those handed back."""

    # -- StoreLeaseAdmin ----------------------------------------------------------------

    @abc.abstractmethod
    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        """As ``Queue.lease_owners``."""

    @abc.abstractmethod
    async def release_owner(self, owner: str) -> list[Ref]:
        """As ``Queue.release_owner``; returns the jobs handed back."""

    # -- Inspection ---------------------------------------------------------------------

    @abc.abstractmethod
    async def stats(self, campaign: str | None = None) -> CampaignStats:
        """As ``Queue.stats``."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """As ``Queue.get``."""

    @abc.abstractmethod
    async def campaigns(self) -> list[str]:
        """As ``Queue.campaigns``."""

    # -- StoreDeadLetterAdmin -----------------------------------------------------------

    @abc.abstractmethod
    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        """As ``Queue.dead_letters``."""

    @abc.abstractmethod
    async def retry_dead(self, flt: DeadFilter) -> list[Ref]:
        """As ``Queue.retry_dead``; returns the jobs queued again."""

    @abc.abstractmethod
    async def purge_dead(self, flt: DeadFilter) -> int:
        """As ``Queue.purge_dead``."""

    # -- Blobs --------------------------------------------------------------------------

    @abc.abstractmethod
    async def put_blob(self, digest: str, data: bytes) -> None:
        """As ``Queue.put_blob``."""

    @abc.abstractmethod
    async def get_blob(self, digest: str) -> bytes | None:
        """As ``Queue.get_blob``."""

    # -- CampaignSettings: shared by every process using the store ----------------------

    @abc.abstractmethod
    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        """As ``Queue.set_campaign_settings``."""

    @abc.abstractmethod
    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        """As ``Queue.campaign_settings``."""

    # -- StoreCampaignControl -----------------------------------------------------------

    @abc.abstractmethod
    async def set_campaign_state(
        self, campaign: str, state: CampaignState
    ) -> tuple[CampaignChange, list[Ref]]:
        """As ``Queue.set_campaign_state``; a resume also returns the campaign's jobs due
        now, for the broker to announce (their messages went unclaimed while it was
        paused)."""

    @abc.abstractmethod
    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        """As ``Queue.campaign_states``."""


STORES: Plugins[JobStore] = Plugins(
    "job store URL",
    {
        "postgresql": "mailspool.queue.postgres.store:PostgresStore",
        "postgres": "mailspool.queue.postgres.store:PostgresStore",
        "redis": "mailspool.queue.redis.store:RedisJobStore",
        "rediss": "mailspool.queue.redis.store:RedisJobStore",
    },
    "use postgresql://user@host:5432/database or redis://host:6379/0",
)


def store_class(url: str) -> type[JobStore]:
    """The job store class for ``url``'s scheme, its driver not yet imported."""
    return STORES.for_url(url)


def make_store(url: str) -> JobStore:
    """A job store for ``url`` (not yet opened)."""
    return store_class(url).from_url(url)
