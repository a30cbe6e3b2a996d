"""The producer: rows -> validated, rendered jobs (builder.py) -> the queue, in batches.

A row that fails is written to the rejects file (rejects.py) with its row number, field
and reason; the others go on. Content shared by many jobs (attachments) is stored once
as a blob, before the first batch that references it. Each batch's recipients are checked
against the suppression list (screen.py) just before it is queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mailspool.errors import RejectedRow
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.deliverability import Deliverability, is_signed
from mailspool.intake.rejects import Rejects
from mailspool.intake.screen import screen, suppression_list
from mailspool.intake.sources.base import Row
from mailspool.message.render import Renderer
from mailspool.models import Enqueued, Job, State
from mailspool.queue import Enqueuing, Suppressing
from mailspool.queue.suppression import SuppressionList
from mailspool.schedule import Schedule

if TYPE_CHECKING:  # the render processes: large sources only
    from mailspool.intake.pool import BuildPool

BATCH = 4000
#: the first batch is small: a worker in this process starts on it that much sooner
FIRST_BATCH = 500


@dataclass(slots=True)
class ProducerReport:
    """What a producer's run did with the rows: how many were read (``rows``), queued
    as new jobs, found queued by an earlier run of the same campaign and not final yet
    (``pending``), found sent, dead or cancelled (its campaign cancelled) already,
    duplicates of an earlier row of this run, rejected (then ``rejects_file`` is where
    they are listed), suppressed (every
    recipient on the suppression list, now or in an earlier run) and queued without a
    DKIM signature while keys are configured (``unsigned``)."""

    rows: int = 0
    new: int = 0
    pending: int = 0
    already_sent: int = 0
    already_dead: int = 0
    already_cancelled: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: rows whose every recipient is suppressed: recorded as final suppressed jobs
    suppressed: int = 0
    #: messages queued without a DKIM signature (no key for their From domain)
    unsigned: int = 0
    rejects_file: Path | None = None

    @property
    def queued(self) -> int:
        """The jobs of this campaign waiting to be sent after the run."""
        return self.new + self.pending

    def count_known(self, result: Enqueued) -> None:
        """Count a row whose job the queue had already (any result but NEW)."""
        if result is Enqueued.SUPPRESSED:
            self.suppressed += 1
        elif result is Enqueued.PENDING:
            self.pending += 1
        elif result is Enqueued.SENT:
            self.already_sent += 1
        elif result is Enqueued.DEAD:
            self.already_dead += 1
        elif result is Enqueued.CANCELLED:
            self.already_cancelled += 1
        else:
            self.duplicates += 1


class EnqueuingSuppressing(Enqueuing, Suppressing, Protocol):
    """What the producer uses of a queue: adding jobs, and its suppression list."""


@dataclass(kw_only=True)
class Producer:
    """Builds a campaign's jobs from rows and puts them on ``queue`` in batches; one
    batch is written while the next is built. :meth:`run` returns a ProducerReport.

    ``renderer``, ``campaign``, ``attachments``, ``key_column`` and ``deliverability``
    make the job builder (builder.JobBuilder; ``attachments`` also holds the blobs to
    store); rejected rows go to ``rejects``. With ``pool``, render processes build the
    jobs (pool.py; its spec has the same deliverability), else this process does.
    """

    queue: EnqueuingSuppressing
    renderer: Renderer
    campaign: str
    rejects: Rejects
    attachments: Attachments
    key_column: str | None = None
    pool: BuildPool | None = None
    deliverability: Deliverability = field(default_factory=Deliverability)
    #: the column of each recipient's timezone, and when the jobs are due (schedule.py)
    timezone_column: str | None = None
    schedule: Schedule | None = None
    report: ProducerReport = field(default_factory=ProducerReport, init=False)
    builder: JobBuilder = field(init=False)
    _suppressions: SuppressionList | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.pool is not None and self.pool.spec.campaign != self.campaign:
            raise ValueError(f"the pool builds jobs of {self.pool.spec.campaign!r}")
        if self.pool is not None and self.pool.spec.deliverability != self.deliverability:
            # rows built here while the children start must come out the same
            raise ValueError("the pool signs and links with other settings than the producer")
        if self.pool is not None and self.pool.spec.timezone_column != self.timezone_column:
            raise ValueError("the pool reads another timezone column than the producer")
        self.builder = JobBuilder(
            renderer=self.renderer,
            campaign=self.campaign,
            attachments=self.attachments,
            key_column=self.key_column,
            deliverability=self.deliverability,
            timezone_column=self.timezone_column,
        )
        self._suppressions = suppression_list(self.queue)

    async def run(self, rows: Iterable[Row | RejectedRow]) -> ProducerReport:
        batch: list[Job] = []
        # one batch is written (on the queue's thread) while the next one is rendered
        writing: asyncio.Task[None] | None = None
        try:
            async for item in self._built(rows):
                self.report.rows += 1
                if isinstance(item, RejectedRow):
                    self._reject(item)
                    continue
                batch.append(item)
                if len(batch) >= (FIRST_BATCH if writing is None else BATCH):
                    if writing is not None:
                        await writing
                    await self._store_blobs()  # before the jobs that use them
                    writing = asyncio.ensure_future(self._flush(batch))
                    await asyncio.sleep(0)  # let the write start before rendering on
                    batch = []
            if writing is not None:
                await writing
                writing = None
            if batch:
                await self._flush(batch)
        finally:
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)
            self.rejects.close()
        if self.rejects.written:
            self.report.rejects_file = self.rejects.path
        return self.report

    def _built(self, rows: Iterable[Row | RejectedRow]) -> AsyncIterator[Job | RejectedRow]:
        if self.pool is None:
            return self._built_here(rows)
        return self.pool.built(
            rows, build_here=self.builder.build_rows, attachments=self.attachments
        )

    async def _built_here(
        self, rows: Iterable[Row | RejectedRow]
    ) -> AsyncIterator[Job | RejectedRow]:
        for item in self.builder.build_rows(rows):
            yield item

    def _reject(self, err: RejectedRow) -> None:
        self.report.rejected += 1
        self.rejects.add(err)

    async def _store_blobs(self) -> None:
        """Store the attachment blobs first seen since the last call."""
        for digest, data in self.attachments.take_pending().items():
            await self.queue.put_blob(digest, data)

    async def _flush(self, batch: list[Job]) -> None:
        await self._store_blobs()
        if self.schedule is not None and not self.schedule.empty:
            now = time.time()  # each job due at its send time, in a window of its timezone
            for job in batch:
                job.not_before = self.schedule.due(now, job.timezone)
        if self._suppressions is not None:
            await screen(self._suppressions, batch, time.time())
        rep = self.report
        signing = self.deliverability.signer is not None
        for job, res in zip(batch, await self.queue.enqueue(batch), strict=True):
            if res is Enqueued.NEW:
                if job.state is State.SUPPRESSED:
                    rep.suppressed += 1
                    continue
                rep.new += 1
                if signing and not is_signed(job):
                    rep.unsigned += 1
            else:
                rep.count_known(res)
