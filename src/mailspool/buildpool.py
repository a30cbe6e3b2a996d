"""Building jobs in child processes.

Rendering and composing a message is CPU work in Python, and one process runs it on one
core. With a pool, child processes build the jobs while this process reads the source,
writes the queue and (for ``send``) delivers. Results come back in row order, so the
first of two rows with the same key still wins and rejected rows are reported in order.
Small sources are built in this process: starting the children costs more than it saves.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.models import Job
from mailspool.packing import Packed, pack
from mailspool.producer import Attachments, JobBuilder, Producer
from mailspool.render import Renderer, Template
from mailspool.sources.base import Row

CHUNK_ROWS = 500
#: below this size a source is built in this process
MIN_SOURCE_BYTES = 256 * 1024
MAX_PROCESSES = 4

# Rows and jobs cross the process boundary as plain tuples: pickling a slotted dataclass
# costs several times more per object, which was most of what the pool added.
#: a row: (number, values)
_RowData = tuple[int, dict[str, Any]]
#: a child's answer for one row: the job's fields (see _job_data), or the (field, reason)
#: it was rejected for
_Built = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class BuildSpec:
    """What a child process needs to build jobs exactly as this process would. Plain
    data, since compiled Jinja templates do not pickle: the child parses the template
    text again."""

    template: tuple[str, str | None, tuple[str, str]] | None  # text, html text, names
    from_addr: str | None
    subject: str | None
    campaign: str
    attachment_dir: Path
    key_column: str | None
    #: pack each message for a queue that stores them packed (mailspool.packing)
    pack: bool = False

    @staticmethod
    def template_of(tpl: Template | None) -> tuple[str, str | None, tuple[str, str]] | None:
        return None if tpl is None else (tpl.source_text, tpl.html_text, tpl.names)

    def builder(self) -> JobBuilder:
        tpl = None
        if self.template is not None:
            text, html, (name, html_name) = self.template
            tpl = Template.parse(text, html_text=html, name=name, html_name=html_name)
        renderer = Renderer.build(tpl, self.from_addr, self.subject)
        attachments = Attachments(self.attachment_dir)
        return JobBuilder(renderer, self.campaign, attachments, self.key_column)


class _Child:
    """The builder of this child process (set once, by the pool's initializer)."""

    builder: JobBuilder | None = None
    pack: bool = False


def _start_child(spec: BuildSpec) -> None:
    # the parent handles Ctrl-C and SIGTERM (sent to the whole process group) and shuts
    # the pool down in order; a child dying of them would break the pool mid-run
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _Child.builder = spec.builder()
    _Child.pack = spec.pack


def _build_chunk(rows: list[_RowData]) -> tuple[list[_Built], dict[str, bytes]]:
    builder = _Child.builder
    assert builder is not None, "the pool's initializer did not run"
    out: list[_Built] = []
    for number, values in rows:
        try:
            out.append(_job_data(builder.build(Row(number, values), time.time()), _Child.pack))
        except RejectedRow as exc:
            out.append((exc.field, exc.reason))
    return out, builder.attachments.take_pending()


def _job_data(j: Job, packs: bool) -> _Built:
    # packed here, in parallel, and a fifth of the bytes to send back
    message = pack(j.message) if packs else j.message
    return (j.id, j.key, j.message_id, j.sender, j.recipients, message, j.row,
            j.body_offset, j.attachments, j.created_at)  # fmt: skip


def _job(campaign: str, d: _Built, packs: bool) -> Job:
    jid, key, message_id, sender, recipients, message, row, body_offset, atts, created = d
    return Job(
        jid, campaign, key, message_id, sender, recipients,
        Packed(message) if packs else message, row, body_offset, atts, created_at=created,
    )  # fmt: skip


def _noop() -> None:
    return None


def default_processes(source: Path, *, delivering: bool) -> int:
    """How many children to build with: none for a small source; else one per core
    (less one when this process also delivers), at most MAX_PROCESSES."""
    try:
        if source.stat().st_size < MIN_SOURCE_BYTES:
            return 0
    except OSError:
        return 0
    cpus = os.cpu_count() or 1
    if cpus < 2:
        return 0
    return max(1, min(MAX_PROCESSES, cpus - 1 if delivering else cpus))


class BuildPool:
    def __init__(self, spec: BuildSpec, processes: int) -> None:
        self.processes = processes
        self.spec = spec
        self._executor = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(spec,),
        )
        # start the children now: their start-up overlaps with ours (queue, leases)
        self._warm = [self._executor.submit(_noop) for _ in range(processes)]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        """Close without blocking the event loop (a worker may be delivering)."""
        await asyncio.to_thread(self.close)

    async def built(
        self, rows: Iterable[Row | RejectedRow], producer: Producer
    ) -> AsyncIterator[Job | RejectedRow]:
        """Each row's job, or its rejection (with the row number), in row order; at most
        a few chunks are out at once, so memory stays constant."""
        chunks = _Chunks(self._executor, producer.attachments, producer.campaign, self.spec.pack)
        window = 2 * self.processes + 1
        try:
            chunk: list[Row | RejectedRow] = []
            for item in rows:
                chunk.append(item)
                if len(chunk) < CHUNK_ROWS:
                    continue
                chunks.submit(chunk)
                chunk = []
                # hand on what is ready, and wait when the window is full
                while chunks.ready(window):
                    for job in await chunks.take():
                        yield job
            if chunk:
                chunks.submit(chunk)
            while chunks.out:
                for job in await chunks.take():
                    yield job
        finally:
            chunks.cancel()


_Answer = tuple[list[_Built], dict[str, bytes]]


class _Chunks:
    """Chunks of rows sent to the children, oldest first."""

    def __init__(
        self, executor: ProcessPoolExecutor, attachments: Attachments, campaign: str, packs: bool
    ) -> None:
        self._packs = packs
        self._executor = executor
        self._attachments = attachments
        self._campaign = campaign
        self._loop = asyncio.get_running_loop()
        self.out: deque[tuple[list[Row | RejectedRow], asyncio.Future[_Answer]]] = deque()

    def submit(self, items: list[Row | RejectedRow]) -> None:
        todo = [(r.number, r.values) for r in items if not isinstance(r, RejectedRow)]
        fut: Future[_Answer] = self._executor.submit(_build_chunk, todo)
        self.out.append((items, asyncio.wrap_future(fut, loop=self._loop)))

    def ready(self, window: int) -> bool:
        return bool(self.out) and (len(self.out) >= window or self.out[0][1].done())

    async def take(self) -> list[Job | RejectedRow]:
        items, fut = self.out.popleft()
        try:
            built, blobs = await fut
        except BrokenProcessPool as exc:
            raise MailspoolError(f"a render process died: {exc}") from exc
        self._attachments.adopt(blobs)
        answers = iter(built)
        result: list[Job | RejectedRow] = []
        for item in items:
            if isinstance(item, RejectedRow):
                result.append(item)
                continue
            answer = next(answers)
            if len(answer) == 2:
                result.append(RejectedRow(*answer, row=item.number))
            else:
                result.append(_job(self._campaign, answer, self._packs))
        return result

    def cancel(self) -> None:
        for _, fut in self.out:
            fut.cancel()
