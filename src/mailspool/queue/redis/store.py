"""The job store in Redis, for the RabbitMQ queue (``--store redis://...``, ``rediss://``).

URL: the Redis queue's, ``redis://[:password@]host:6379/0?prefix=mailspool&reconnect_for=120``
(see :mod:`mailspool.queue.redis.connection`): ``prefix`` namespaces every key, so several
deployments (or test runs) share one Redis; ``reconnect_for`` is how long an operation
keeps retrying, with backoff, while Redis is unreachable or loading its data.

The semantics are those of the PostgreSQL store (:mod:`mailspool.queue.postgres.store`), call
for call. Each change is one Lua script (:mod:`mailspool.queue.redis.store_scripts`) per batch
of 500 jobs, so it is applied whole or not at all; leases are compared with the clock of
the process that claims, as there: keep the workers' clocks synchronised (NTP).

Keys (``P`` is the prefix, ``C`` a campaign). The store keeps the Redis queue's layout for
what the two share, so that the queue's own code reads jobs, dead letters, campaigns,
blobs and settings here and purges dead letters (see :mod:`mailspool.queue.redis.queue`)::

    P:job:ID          hash   the job: message, recipients, state, attempts, last reply, ...
    P:counts:C        hash   jobs per state, and ambiguous deliveries
    P:dead:C          zset   dead letters by time of death
    P:campaigns       zset   every campaign, by time of its first job
    P:active          zset   campaigns with jobs queued, deferred or sending
    P:blob:DIGEST     string content shared by many jobs (attachments)
    P:settings        hash   per-campaign settings (JSON)
    P:control         hash   campaigns paused or cancelled, as the Redis queue's
    P:supp:...        the suppression list, as the Redis queue's
                      (:mod:`mailspool.queue.redis.suppressions`)
    P:ret:...         returned mail, as the Redis queue's
                      (:mod:`mailspool.queue.redis.returns`)
    P:ev:...          job events and webhook delivery state, as the Redis queue's
                      (:mod:`mailspool.queue.redis.events`)

In place of the queue's stream, one index of what is due (the table's ``ready_at``)::

    P:due:C:STATE     zset   C's jobs in STATE (queued, deferred, sending) by the time they
                             are due, or for ``sending`` the time their lease expires

Durability is Redis's, as for the Redis queue: run it with ``appendonly yes`` and
``appendfsync always`` (docs/distributed.md). As there, a sent job's body is dropped from
its hash (Redis keeps everything in memory); state, attempts, reply and Message-ID stay.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailspool.errors import QueueError
from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.base import DeadFilter, added, final_reason, resumed
from mailspool.queue.redis.encoding import as_str, claimed_jobs, float_arg, job_args
from mailspool.queue.redis.events import RedisEventLog
from mailspool.queue.redis.queue import BATCH, RedisQueue
from mailspool.queue.redis.returns import RedisReturnLog
from mailspool.queue.redis.store_scripts import STORE_SCRIPTS
from mailspool.queue.redis.suppressions import RedisSuppressionList
from mailspool.queue.store import JobStore, Ref

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisJobStore"]

Arg = str | bytes | float | int


class RedisJobStore(JobStore):
    """Every role of :class:`JobStore` in one Redis server, for the RabbitMQ queue (see the
    module docstring). ``url``: ``redis://`` or ``rediss://``, as the Redis queue's."""

    packs_messages = RedisQueue.packs_messages  # the same encoding of jobs

    def __init__(self, url: str) -> None:
        # The Redis queue over the same keys: its connection (with retries while Redis is
        # unreachable), and its reads of what the layouts share. Its claims and enqueues,
        # which use a stream the store has not, are never called.
        self._shared = RedisQueue(url)
        self.url = self._shared.url
        self.prefix = self._shared.prefix
        self._scripts: dict[str, AsyncScript] = {}

    @property
    def suppressions(self) -> RedisSuppressionList:
        """The Redis queue's suppression list: the same keys under the same prefix."""
        return self._shared.suppressions

    @property
    def returns(self) -> RedisReturnLog:
        """The Redis queue's returned mail: the same keys under the same prefix."""
        return self._shared.returns

    @property
    def events(self) -> RedisEventLog:
        """The Redis queue's events: the same keys under the same prefix, written by this
        store's scripts (store_scripts.py) with the changes that cause them."""
        return self._shared.events

    # -- plumbing -------------------------------------------------------------------

    async def open(self) -> None:
        await self._shared.open()
        client = self._shared.redis
        self._scripts = {n: client.register_script(src) for n, src in STORE_SCRIPTS.items()}

    async def close(self) -> None:
        self._scripts = {}
        await self._shared.close()

    async def _run(self, name: str, args: Sequence[Arg]) -> Any:
        if not self._scripts:
            raise QueueError(f"the Redis job store {self.url} is not open")
        script, full = self._scripts[name], [self.prefix, *args]
        return await self._shared.reconnect.run(name, lambda: script(args=full))

    async def _batches(self, name: str, head: Sequence[Arg], items: Sequence[Arg]) -> list[Any]:
        """Run script ``name`` over ``items`` in batches (each atomic), replies joined."""
        out: list[Any] = []
        for start in range(0, len(items), BATCH):
            out += await self._run(name, [*head, *items[start : start + BATCH]])
        return out

    # -- producer side ----------------------------------------------------------------

    async def insert(self, jobs: Sequence[Job]) -> tuple[list[Enqueued], list[Ref]]:
        results: list[Enqueued] = []
        due: list[Ref] = []
        seen: set[str] = set()
        for start in range(0, len(jobs), BATCH):
            chunk = jobs[start : start + BATCH]
            now = time.time()
            args: list[Arg] = [float_arg(now), uuid.uuid4().hex]  # the token: see _INSERT
            for j in chunk:
                args.extend(job_args(j, now))
            for j, r in zip(chunk, await self._run("insert", args), strict=True):
                if j.id in seen:  # the same id earlier in this call, in another batch
                    results.append(Enqueued.DUPLICATE)
                elif isinstance(r, list):
                    results.append(resumed(int(r[0]), as_str(r[1]), j.row))
                elif r == b"new":
                    results.append(added(j))
                    if j.not_before <= now and j.state is not State.SUPPRESSED:
                        due.append(Ref(j.id, j.campaign))
                else:
                    results.append(Enqueued.DUPLICATE)
                seen.add(j.id)
        return results, due

    async def put_blob(self, digest: str, data: bytes) -> None:
        await self._shared.put_blob(digest, data)

    async def get_blob(self, digest: str) -> bytes | None:
        return await self._shared.get_blob(digest)

    # -- consumer side ----------------------------------------------------------------

    async def claim_ids(
        self, owner: str, ids: Sequence[str], lease: float, campaign: str | None
    ) -> list[Job]:
        now = time.time()
        head = [float_arg(now), owner, float_arg(now + lease), campaign or ""]
        return claimed_jobs(await self._batches("claim_ids", head, ids), owner, now)

    async def claim_due(
        self,
        owner: str,
        limit: int,
        lease: float,
        campaign: str | None,
        states: Sequence[State],
    ) -> list[Job]:
        if limit <= 0:
            return []
        now = time.time()
        args = [float_arg(now), owner, float_arg(now + lease), str(limit), campaign or ""]
        flat = await self._run("claim_due", [*args, *(s.value for s in states)])
        return claimed_jobs(flat, owner, now)

    async def has_due(self, campaign: str | None, states: Sequence[State]) -> bool:
        args = [float_arg(time.time()), campaign or "", *(s.value for s in states)]
        return bool(await self._run("has_due", args))

    async def exists(self, campaign: str) -> bool:
        key = f"{self.prefix}:campaigns"
        score = await self._shared.reconnect.run(
            "exists", lambda: self._shared.redis.zscore(key, campaign)
        )
        return score is not None

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        applied = 0
        for start in range(0, len(outcomes), BATCH):
            now = float_arg(time.time())
            args: list[Arg] = [now, owner]
            for o in outcomes[start : start + BATCH]:
                ready = float_arg(o.not_before) if o.state is State.DEFERRED else now
                flags = f"{o.state.value}|{ready}|{int(o.ambiguous)}|{final_reason(o)}"
                args += [o.job_id, flags, o.reply]
            applied += int(await self._run("record", args))
        return applied

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        await self._batches("extend", [owner, float_arg(time.time() + lease)], job_ids)

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> list[Ref]:
        due = float_arg(not_before or time.time())
        flags = ["1" if not_before else "0", "0" if reply is None else "1", reply or ""]
        return _refs(await self._batches("release", [due, owner, *flags], job_ids))

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        return sorted(as_str(o) for o in await self._run("lease_owners", [campaign or ""]))

    async def release_owner(self, owner: str) -> list[Ref]:
        return _refs(await self._run("release_owner", [float_arg(time.time()), owner]))

    async def queued(self, job_ids: Sequence[str]) -> list[Ref]:
        return _refs(await self._batches("queued", [float_arg(time.time())], job_ids))

    # -- inspection -------------------------------------------------------------------

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        flat, next_due, last_error = await self._run("stats", [campaign or ""])
        st = CampaignStats(campaign, next_due=float(next_due) if next_due else None)
        counts: dict[str, int] = {}
        for k, v in zip(flat[::2], flat[1::2], strict=True):
            counts[as_str(k)] = counts.get(as_str(k), 0) + int(v)
        st.ambiguous = counts.pop("ambiguous", 0)
        st.counts = {state: n for state, n in counts.items() if n > 0}
        st.last_error = as_str(last_error)
        return st

    async def get(self, job_id: str) -> Job | None:
        return await self._shared.get(job_id)

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        return await self._shared.dead_letters(flt, limit)

    async def retry_dead(self, flt: DeadFilter) -> list[Ref]:
        ids = [j.id for j in await self._shared.dead_letters(flt, sys.maxsize)]
        return _refs(await self._batches("retry_dead", [float_arg(time.time())], ids))

    async def purge_dead(self, flt: DeadFilter) -> int:
        return await self._shared.purge_dead(flt)

    async def campaigns(self) -> list[str]:
        return await self._shared.campaigns()

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        await self._shared.set_campaign_settings(campaign, settings)

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        return await self._shared.campaign_settings(campaign)

    async def set_campaign_state(
        self, campaign: str, state: CampaignState
    ) -> tuple[CampaignChange, list[Ref]]:
        cancelled = 0
        while True:  # a cancel goes a batch at a time (campaign_scripts.py)
            args = [float_arg(time.time()), campaign, state.value, str(BATCH)]
            now_in, n, more = await self._run("set_state", args)
            cancelled += int(n)
            if not int(more):
                break
        change = CampaignChange(CampaignState(as_str(now_in)), cancelled)
        if change.state is not CampaignState.ACTIVE:
            return change, []
        return change, await self._due_refs(campaign)

    async def _due_refs(self, campaign: str) -> list[Ref]:
        """The campaign's queued and deferred jobs due now."""
        keys = [f"{self.prefix}:due:{campaign}:{st}" for st in ("queued", "deferred")]
        now = float_arg(time.time())

        async def read() -> list[Any]:
            pipe = self._shared.redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrangebyscore(key, "-inf", now)
            return list(await pipe.execute())

        found = await self._shared.reconnect.run("campaign_due", read)
        return [Ref(as_str(jid), campaign) for ids in found for jid in ids]

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        return await self._shared.campaign_states(campaigns)


def _refs(flat: Sequence[Any]) -> list[Ref]:
    """Refs from a script's flat reply: id, campaign, id, campaign, ..."""
    return [Ref(as_str(flat[i]), as_str(flat[i + 1])) for i in range(0, len(flat), 2)]
