"""Building jobs in child processes.

Rendering and composing a message is CPU work in Python, and one process runs it on one
core. With a pool, child processes build the jobs while this process reads the source,
writes the queue and (for ``send``) delivers. Results come back in row order, so the
first of two rows with the same key still wins and rejected rows are reported in order.
Small sources are built in this process: starting the children costs more than it saves.

The pool knows nothing of the producer: :meth:`BuildPool.built` is handed the rows, a
callable that builds rows in this process (``JobBuilder.build_rows``: used while the
children start) and the Attachments that take the blobs the children read; the children
build with a JobBuilder of their own, made from the :class:`BuildSpec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.sizing import MAX_PROCESSES, MIN_SOURCE_BYTES, default_processes
from mailspool.intake.sources.base import Row
from mailspool.message.render import Renderer, Template
from mailspool.models import Job
from mailspool.queue.packing import Packed, pack

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# how many processes a source gets is intake/sizing.py's, named here too
__all__ = ["CHUNK_ROWS", "MAX_PROCESSES", "MIN_SOURCE_BYTES", "BuildPool", "BuildSpec",
           "default_processes"]  # fmt: skip

CHUNK_ROWS = 500

# Rows and jobs cross the process boundary as plain tuples: pickling a slotted dataclass
# costs several times more per object, which was most of what the pool added.
#: a row: (number, values)
_RowData = tuple[int, dict[str, Any]]
#: a child's answer for one row: the job's fields (see _job_data), or the (field, reason)
#: it was rejected for
_Built = tuple[Any, ...]
#: builds rows in this process: each row's job or rejection, in row order
BuildHere = Callable[[Iterable[Row | RejectedRow]], Iterator[Job | RejectedRow]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSpec:
    """What a child process needs to build jobs exactly as this process would. Plain
    data, since compiled Jinja templates do not pickle: the child parses the template
    text again.

    ``template`` is the template's text, HTML text and names (:meth:`template_of`), None
    in direct mode; ``from_addr`` and ``subject`` the ``--from`` and ``--subject``
    defaults; ``campaign`` the jobs' campaign; ``attachment_dir`` where attachments are
    resolved; ``key_column`` the idempotency key column, if any; ``deliverability`` the
    DKIM keys, unsubscribe secrets and list (the keys and secrets pickle as they are: a
    child never reads a key file or the environment).
    """

    template: tuple[str, str | None, tuple[str, str]] | None  # text, html text, names
    from_addr: str | None
    subject: str | None
    campaign: str
    attachment_dir: Path
    key_column: str | None
    #: pack each message for a queue that stores them packed (mailspool.queue.packing)
    pack: bool = False
    deliverability: Deliverability = field(default_factory=Deliverability)
    timezone_column: str | None = None

    @staticmethod
    def template_of(tpl: Template | None) -> tuple[str, str | None, tuple[str, str]] | None:
        return None if tpl is None else (tpl.source_text, tpl.html_text, tpl.names)

    def builder(self) -> tuple[JobBuilder, Attachments]:
        """A child's job builder, and its Attachments (whose blobs go to the parent)."""
        tpl = None
        if self.template is not None:
            text, html, (name, html_name) = self.template
            tpl = Template.parse(text, html_text=html, name=name, html_name=html_name)
        renderer = Renderer.build(tpl, self.from_addr, self.subject)
        attachments = Attachments(base=self.attachment_dir)
        builder = JobBuilder(
            renderer=renderer,
            campaign=self.campaign,
            attachments=attachments,
            key_column=self.key_column,
            deliverability=self.deliverability,
            timezone_column=self.timezone_column,
        )
        return builder, attachments


def _child_main(spec: BuildSpec, conn: Connection) -> None:
    """A render process: chunks of rows in, their jobs out, until the parent hangs up."""
    # the parent handles Ctrl-C and SIGTERM (sent to the whole process group) and shuts
    # the pool down in order; a child dying of them would break the pool mid-run
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    builder, attachments = spec.builder()
    try:
        conn.send_bytes(b"")  # ready: until then the parent builds rows itself
    except OSError:
        return  # the parent built every row itself and hung up meanwhile
    while True:
        try:
            rows = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            answer = _build_chunk(builder, rows, spec.pack), attachments.take_pending()
            data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # not a row's fault: the run stops on it, as it would here
            data = pickle.dumps(_failure(exc), pickle.HIGHEST_PROTOCOL)
        try:
            conn.send_bytes(data)
        except OSError:
            return


def _failure(exc: Exception) -> BaseException:
    """The exception for the parent to raise: itself when it survives pickling."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return MailspoolError(f"in a render process: {type(exc).__name__}: {exc}")
    return exc


def _build_chunk(builder: JobBuilder, rows: list[_RowData], packs: bool) -> list[_Built]:
    out: list[_Built] = []
    for number, values in rows:
        try:
            out.append(_job_data(builder.build(Row(number, values), time.time()), packs))
        except RejectedRow as exc:
            out.append((exc.field, exc.reason))
    return out


def _job_data(j: Job, packs: bool) -> _Built:
    # packed here, in parallel, and a fifth of the bytes to send back
    message = pack(j.message) if packs else j.message
    return (
        j.id,
        j.key,
        j.message_id,
        j.sender,
        j.recipients,
        message,
        j.row,
        j.body_offset,
        j.attachments,
        j.created_at,
        j.list_name,
        j.timezone,
    )


def _job(campaign: str, d: _Built, packs: bool) -> Job:
    jid, key, message_id, sender, recipients, message, row, body_offset, atts, created, lst, tz = d
    return Job(
        id=jid,
        campaign=campaign,
        key=key,
        message_id=message_id,
        sender=sender,
        recipients=recipients,
        message=Packed(message) if packs else message,
        row=row,
        body_offset=body_offset,
        attachments=atts,
        created_at=created,
        list_name=lst,
        timezone=tz,
    )


class _Link:
    """One render process and the socket pair to it. The child reads and writes
    ``multiprocessing.Connection`` frames (a 4-byte length, then a pickle); this side
    speaks the same frames on asyncio streams, so no thread of this process waits on a
    child (threads here would take the GIL from the event loop for every chunk)."""

    def __init__(self, spec: BuildSpec) -> None:
        # imported with the first child: a small source (most sends) starts none
        import multiprocessing

        from mailspool.children import start_child

        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_child_main, args=(spec, theirs), name="mailspool-render", daemon=True
        )
        start_child(self.process)  # deaf to Ctrl-C from its first instruction
        theirs.close()
        self._sock = socket.socket(fileno=os.dup(mine.fileno()))
        mine.close()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._ready: asyncio.Future[bytes] | None = None

    async def start(self) -> None:
        """Open the streams (on the event loop) and watch for the child's first frame,
        which is empty: it has started and parsed the template."""
        if self._streams is None:
            self._streams = await asyncio.open_unix_connection(sock=self._sock)
            self._ready = asyncio.ensure_future(self._frame())

    @property
    def ready(self) -> bool:
        return self._ready is not None and self._ready.done()

    def _opened(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._streams is not None, "start() first"
        return self._streams

    async def send(self, rows: list[_RowData]) -> None:
        _, writer = self._opened()
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        writer.write(struct.pack("!i", len(data)) + data)

    async def receive(self) -> _Answer:
        self._opened()
        assert self._ready is not None
        await self._ready
        answer: _Answer | BaseException = pickle.loads(await self._frame())
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _frame(self) -> bytes:
        reader, _ = self._opened()
        try:
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = self.process.exitcode
            raise MailspoolError(
                f"a render process died (exit code {code})"
                if code is not None
                else f"lost the connection to a render process: {exc!r}"
            ) from exc

    def hang_up(self) -> None:
        """On the event loop's thread, or with no loop running: the streams are its."""
        # shut down now: a transport's close waits for the event loop, which a caller
        # joining the children blocks; the child sees the end of its input and exits
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._ready is not None:
            self._ready.cancel()
        if self._streams is not None:
            self._streams[1].close()
        else:
            self._sock.close()

    def join(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class BuildPool:
    """``processes`` render processes building jobs as ``spec`` says, started at once
    (their start-up overlaps the caller's), or with ``start=False`` once :meth:`built`
    has read the first row: what starting them costs (a whole interpreter each) then
    comes after the command has reached its rows, and the first rows are built here
    meanwhile. With ``head_start``, rows are built in this process until a child is
    ready. Close it (:meth:`close` or :meth:`aclose`) when done.
    """

    def __init__(
        self, *, spec: BuildSpec, processes: int, head_start: bool = True, start: bool = True
    ) -> None:
        self.processes = processes
        self.spec = spec
        #: build rows here until a child is ready
        self.head_start = head_start
        self.rows_built_here = 0
        self._links: list[_Link] = []
        if start:
            self.start()

    def start(self) -> None:
        """Start the children, unless they are started already."""
        if not self._links:
            self._links = [_Link(self.spec) for _ in range(self.processes)]

    def close(self) -> None:
        """Hang up on the children (each exits at the end of its chunk) and wait."""
        for link in self._links:
            link.hang_up()
        self._join()

    async def aclose(self) -> None:
        """Close without blocking the event loop (a worker may be delivering): hang up
        here, wait for the children on a thread."""
        for link in self._links:
            link.hang_up()
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for link in self._links:
            link.join()

    async def built(
        self,
        rows: Iterable[Row | RejectedRow],
        *,
        build_here: BuildHere,
        attachments: Attachments,
    ) -> AsyncIterator[Job | RejectedRow]:
        """Each row's job, or its rejection (with the row number), in row order; at most
        a few chunks are out at once, so memory stays constant. ``build_here`` builds
        the rows taken before a child is ready; the blobs the children read are adopted
        into ``attachments``."""
        items = iter(rows)
        first = next(items, None)  # the source opened and its first row read, then...
        if first is None:
            return
        self.start()  # ...the children (when not started yet)
        chunks = _Chunks(self._links, attachments, self.spec.campaign, self.spec.pack)
        window = 2 * self.processes + 1
        for link in self._links:
            await link.start()
        chunk: list[Row | RejectedRow] = []
        for item in itertools.chain((first,), items):
            chunk.append(item)
            if len(chunk) < CHUNK_ROWS:
                continue
            starting = not any(link.ready for link in self._links)
            if self.head_start and starting and not chunks.out:
                # the children are still starting (about half a second): build here
                # meanwhile, so the first jobs are queued (and sent) that much sooner
                for job in build_here(chunk):
                    yield job
                self.rows_built_here += len(chunk)
                chunk = []
                await asyncio.sleep(0)
                continue
            await chunks.submit(chunk)
            chunk = []
            # hand on what is ready, and wait when the window is full
            while len(chunks.out) >= window:
                for job in await chunks.take():
                    yield job
        if chunk:
            await chunks.submit(chunk)
        while chunks.out:
            for job in await chunks.take():
                yield job


_Answer = tuple[list[_Built], dict[str, bytes]]


class _Chunks:
    """Chunks of rows sent to the children in turn, oldest first. A child answers its
    chunks in the order it got them, so reading the oldest chunk's child gets its
    answer."""

    def __init__(
        self, links: list[_Link], attachments: Attachments, campaign: str, packs: bool
    ) -> None:
        self._links = links
        self._next = 0
        self._attachments = attachments
        self._campaign = campaign
        self._packs = packs
        self.out: deque[tuple[list[Row | RejectedRow], _Link]] = deque()

    async def submit(self, items: list[Row | RejectedRow]) -> None:
        link = self._links[self._next % len(self._links)]
        self._next += 1
        await link.send([(r.number, r.values) for r in items if not isinstance(r, RejectedRow)])
        self.out.append((items, link))

    async def take(self) -> list[Job | RejectedRow]:
        items, link = self.out.popleft()
        built, blobs = await link.receive()
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
