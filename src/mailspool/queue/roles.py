"""The roles of a queue and of a job store: what each kind of caller uses of them.

A caller types its parameter against the role it uses, not the whole :class:`Queue`: the
worker needs claims and outcomes, ``status`` needs stats, ``mailspool dlq`` needs the
dead letters. Every backend implements every role (it subclasses :class:`Queue` or
:class:`JobStore`, which declare all of them, grouped by role, with their semantics);
``tests/queue/test_queue_contract.py`` checks that each backend class satisfies each role.

Queue roles (:mod:`mailspool.queue.base`):

==================  ====================================================================
Enqueuing           add jobs, their attachments and their campaign's settings
Claiming            lease due jobs, record their outcomes, heartbeat and hand back
LeaseAdmin          hand back the leases of workers known to be dead
Inspection          read stats, one job, the campaigns
DeadLetterAdmin     list, retry and purge dead letters
Blobs               content shared by many jobs (attachments, named templates)
CampaignSettings    per-campaign settings (a campaign's own retry schedule)
CampaignControl     pause, resume and cancel a campaign; read campaigns' states
Suppressing         the suppression list kept beside the jobs
Returning           returned mail (bounces, complaints) recorded on the jobs
==================  ====================================================================

Job store roles (:mod:`mailspool.queue.store`) are the same, in the shapes a broker queue
needs: a change that makes jobs due returns their :class:`Ref`\\ s, for the broker to
announce. ``Inspection``, ``Blobs`` and ``CampaignSettings`` are shared as they are;
``StoreCampaignControl`` returns a resumed campaign's due jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
from mailspool.queue.store import Ref
from mailspool.queue.suppression import SuppressionList

if TYPE_CHECKING:
    from mailspool.queue.base import Queue
    from mailspool.queue.returns import ReturnLog
    from mailspool.queue.store import JobStore

# -- shared by queues and job stores ------------------------------------------------------


@runtime_checkable
class Blobs(Protocol):
    """Content shared by many jobs, stored once by digest (attachments, named templates)."""

    async def put_blob(self, digest: str, data: bytes) -> None: ...
    async def get_blob(self, digest: str) -> bytes | None: ...


@runtime_checkable
class CampaignSettings(Protocol):
    """Per-campaign settings (the retry schedule given when the campaign was enqueued)."""

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None: ...
    async def campaign_settings(self, campaign: str) -> dict[str, Any]: ...


@runtime_checkable
class Suppressing(Protocol):
    """The suppression list kept beside the jobs (queue/suppression.py)."""

    @property
    def suppressions(self) -> SuppressionList: ...


@runtime_checkable
class Returning(Protocol):
    """Returned mail kept beside the jobs (queue/returns.py): bounces and complaints
    recorded on their jobs, jobs found by Message-ID, unmatched messages."""

    @property
    def returns(self) -> ReturnLog: ...


@runtime_checkable
class Inspection(Protocol):
    """Reading without changing (``status``, the API's status routes, the metrics)."""

    async def stats(self, campaign: str | None = None) -> CampaignStats: ...
    async def get(self, job_id: str) -> Job | None: ...
    async def campaigns(self) -> list[str]: ...


# -- the queue's ---------------------------------------------------------------------------


@runtime_checkable
class Enqueuing(Protocol):
    """Adding jobs, their attachments and their campaign's settings (producer, HTTP API)."""

    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]: ...
    async def put_blob(self, digest: str, data: bytes) -> None: ...
    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None: ...


@runtime_checkable
class Claiming(Protocol):
    """Leasing due jobs, settling them, queuing refused recipients again (the worker)."""

    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]: ...
    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int: ...
    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None: ...
    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None: ...
    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]: ...
    async def get_blob(self, digest: str) -> bytes | None: ...
    async def campaign_settings(self, campaign: str) -> dict[str, Any]: ...
    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]: ...


@runtime_checkable
class CampaignControl(Protocol):
    """Pausing, resuming and cancelling a campaign (``mailspool campaign``, the API)."""

    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange: ...
    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]: ...


@runtime_checkable
class LeaseAdmin(Protocol):
    """Handing back every lease of a worker known to be dead (delivery.leases)."""

    async def lease_owners(self, campaign: str | None = None) -> list[str]: ...
    async def release_owner(self, owner: str) -> int: ...


@runtime_checkable
class DeadLetterAdmin(Protocol):
    """Listing, retrying and purging dead letters (``mailspool dlq``, the API's retry)."""

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]: ...
    async def retry_dead(self, flt: DeadFilter) -> int: ...
    async def purge_dead(self, flt: DeadFilter) -> int: ...


# -- the job store's, where its shape differs from the queue's ----------------------------


@runtime_checkable
class StoreEnqueuing(Protocol):
    """Adding jobs (the broker queue's ``enqueue``): returns those due now, to announce."""

    async def insert(self, jobs: Sequence[Job]) -> tuple[list[Enqueued], list[Ref]]: ...
    async def put_blob(self, digest: str, data: bytes) -> None: ...
    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None: ...


@runtime_checkable
class StoreClaiming(Protocol):
    """Leasing jobs by id or when due, and settling them (the broker queue's Claiming)."""

    async def claim_ids(
        self, owner: str, ids: Sequence[str], lease: float, campaign: str | None
    ) -> list[Job]: ...
    async def claim_due(
        self,
        owner: str,
        limit: int,
        lease: float,
        campaign: str | None,
        states: Sequence[State],
    ) -> list[Job]: ...
    async def has_due(self, campaign: str | None, states: Sequence[State]) -> bool: ...
    async def exists(self, campaign: str) -> bool: ...
    async def queued(self, job_ids: Sequence[str]) -> list[Ref]: ...
    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int: ...
    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None: ...
    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> list[Ref]: ...


@runtime_checkable
class StoreCampaignControl(Protocol):
    """As :class:`CampaignControl`; a resume returns the campaign's due jobs, to announce."""

    async def set_campaign_state(
        self, campaign: str, state: CampaignState
    ) -> tuple[CampaignChange, list[Ref]]: ...
    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]: ...


@runtime_checkable
class StoreLeaseAdmin(Protocol):
    """As :class:`LeaseAdmin`; handing back returns the jobs, to announce them again."""

    async def lease_owners(self, campaign: str | None = None) -> list[str]: ...
    async def release_owner(self, owner: str) -> list[Ref]: ...


@runtime_checkable
class StoreDeadLetterAdmin(Protocol):
    """As :class:`DeadLetterAdmin`; a retry returns the jobs, to announce them."""

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]: ...
    async def retry_dead(self, flt: DeadFilter) -> list[Ref]: ...
    async def purge_dead(self, flt: DeadFilter) -> int: ...


if TYPE_CHECKING:
    # The type checker compares the interfaces with their roles here, types included (the
    # contract suite compares names and defaults of each backend class at run time).

    def _queue_roles(q: Queue) -> tuple[
        Enqueuing, Claiming, LeaseAdmin, Inspection, DeadLetterAdmin, Blobs, CampaignSettings,
        CampaignControl, Suppressing, Returning,
    ]:  # fmt: skip
        return (q, q, q, q, q, q, q, q, q, q)

    def _store_roles(s: JobStore) -> tuple[
        StoreEnqueuing, StoreClaiming, StoreLeaseAdmin, Inspection, StoreDeadLetterAdmin,
        Blobs, CampaignSettings, StoreCampaignControl, Suppressing, Returning,
    ]:  # fmt: skip
        return (s, s, s, s, s, s, s, s, s, s)
