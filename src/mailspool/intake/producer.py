"""The producer: rows -> validated, rendered jobs -> the queue, in batches.

A row that fails is written to the rejects file with its row number, field and reason;
the others go on. Content shared by many jobs (attachments) is stored once as a blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake import csvout
from mailspool.intake.sources.base import Row
from mailspool.message.compose import (
    alternative_entity,
    format_address,
    format_sender,
    header_block,
    text_entity,
)
from mailspool.message.headers import check_filename
from mailspool.message.render import Rendered, Renderer
from mailspool.models import AttachmentRef, Enqueued, Job, job_id
from mailspool.queue import Enqueuing

if TYPE_CHECKING:
    from mailspool.intake.pool import BuildPool

BATCH = 4000
#: the first batch is small: a worker in this process starts on it that much sooner
FIRST_BATCH = 500
MAX_MESSAGE_BYTES = 25 * 1024 * 1024


@dataclass(slots=True)
class ProducerReport:
    rows: int = 0
    new: int = 0
    pending: int = 0  # queued by an earlier run of the same campaign, not final yet
    already_sent: int = 0
    already_dead: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects_file: Path | None = None

    @property
    def queued(self) -> int:
        return self.new + self.pending


class Rejects:
    """The rejects CSV, created on the first rejected row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: TextIO | None = None
        self._w: csvout.SafeWriter | None = None

    def add(self, err: RejectedRow) -> None:
        if self._w is None:
            try:
                self._f = csvout.create(self.path)
            except OSError as exc:
                raise MailspoolError(
                    f"cannot write the rejects file {self.path}: {exc.strerror or exc}"
                ) from exc
            self._w = csvout.SafeWriter(self._f)
            self._w.writerow(["row", "field", "reason"])
        # field and reason can quote the input: the writer neutralises formula cells
        self._w.writerow([err.row, err.field, err.reason])

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    @property
    def written(self) -> bool:
        return self._w is not None


@dataclass
class Attachments:
    """Resolves attachment paths under one base directory and stores each file once."""

    base: Path
    queue: Enqueuing | None = None  # None in a child process: the parent stores the blobs
    _refs: dict[str, AttachmentRef] = field(default_factory=dict)
    _pending: dict[str, bytes] = field(default_factory=dict)
    _sizes: dict[str, int] = field(default_factory=dict)
    _stored: set[str] = field(default_factory=set)

    def resolve(self, name: str) -> AttachmentRef:
        base = self.base.resolve()
        path = (base / name).resolve()
        filename = check_filename("Attachment", path.name)
        if not path.is_relative_to(base):
            raise RejectedRow("Attachment", f"{name!r} is outside the attachment directory {base}")
        key = str(path)
        ref = self._refs.get(key)
        if ref is not None:
            return ref
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = f"cannot read {name!r}: {exc.strerror or exc}"
            raise RejectedRow("Attachment", reason) from None
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        ref = AttachmentRef(hashlib.sha256(data).hexdigest(), filename, ctype)
        self._refs[key] = ref
        self._pending[ref.digest] = data
        self._sizes[ref.digest] = len(data)
        return ref

    def encoded_size(self, ref: AttachmentRef) -> int:
        """About how many bytes the attachment adds to a message (base64, CRLF lines)."""
        raw = self._sizes.get(ref.digest, 0)
        return (raw + 2) // 3 * 4 * 78 // 76 + 300

    def take_pending(self) -> dict[str, bytes]:
        """Blobs read since the last call (a child process hands them to its parent)."""
        pending, self._pending = self._pending, {}
        return pending

    def adopt(self, blobs: dict[str, bytes]) -> None:
        """Blobs a child process read, to be stored with the next flush."""
        for digest, data in blobs.items():
            if digest not in self._stored:
                self._pending[digest] = data

    async def flush(self) -> None:
        """Store blobs first seen in this batch (before the jobs that reference them)."""
        pending = self.take_pending()
        if pending and self.queue is None:
            raise MailspoolError("attachments cannot be stored without a queue")
        for digest, data in pending.items():
            assert self.queue is not None
            await self.queue.put_blob(digest, data)
            self._stored.add(digest)


@dataclass
class JobBuilder:
    """Turns a row into a validated job; pure CPU work, also run in child processes
    (``buildpool``)."""

    renderer: Renderer
    campaign: str
    attachments: Attachments
    key_column: str | None = None

    def build(self, row: Row, now: float) -> Job:
        r = self.renderer.render(row.values)
        key = self._key(row, r)
        jid = job_id(self.campaign, key)
        domain = r.sender[1].rpartition("@")[2]
        message_id = f"<{jid}@{domain}>"
        refs = tuple(self.attachments.resolve(a) for a in r.attachments) if r.attachments else ()
        message, offset = compose(r, message_id, now)
        size = len(message)
        if refs:
            size += sum(self.attachments.encoded_size(ref) for ref in refs)
        if size > MAX_MESSAGE_BYTES:
            field_name = "Attachment" if refs else "body"
            raise RejectedRow(
                field_name, f"message is {size} bytes, over the {MAX_MESSAGE_BYTES} byte limit"
            )
        return Job(
            id=jid,
            campaign=self.campaign,
            key=key,
            message_id=message_id,
            sender=r.sender[1],
            recipients=tuple(r.recipients),
            message=message,
            row=row.number,
            body_offset=offset,
            attachments=refs,
            created_at=now,
        )

    def _key(self, row: Row, r: Rendered) -> str:
        if self.key_column is None:
            return ",".join(sorted(a.lower() for a in r.recipients))
        if self.key_column not in row.values:
            raise RejectedRow(self.key_column, "no such column (the --key-column)")
        value = row.values[self.key_column]
        if value in (None, ""):
            raise RejectedRow(self.key_column, "the key column is empty")
        return str(value)


@dataclass
class Producer:
    queue: Enqueuing
    renderer: Renderer
    campaign: str
    rejects: Rejects
    attachments: Attachments
    key_column: str | None = None
    report: ProducerReport = field(default_factory=ProducerReport)
    #: builds jobs in child processes when set; else in this one
    pool: BuildPool | None = None

    def __post_init__(self) -> None:
        self._builder = JobBuilder(self.renderer, self.campaign, self.attachments, self.key_column)

    def build(self, row: Row, now: float) -> Job:
        return self._builder.build(row, now)

    async def built_here(
        self, rows: Iterable[Row | RejectedRow]
    ) -> AsyncIterator[Job | RejectedRow]:
        """Each row's job, or its rejection (with the row number), in row order."""
        for item in rows:
            if isinstance(item, RejectedRow):
                yield item
                continue
            try:
                yield self.build(item, time.time())
            except RejectedRow as exc:
                yield exc.at_row(item.number)

    async def run(self, rows: Iterable[Row | RejectedRow]) -> ProducerReport:
        batch: list[Job] = []
        # one batch is written (on the queue's thread) while the next one is rendered
        writing: asyncio.Task[None] | None = None
        try:
            built = self.built_here(rows) if self.pool is None else self.pool.built(rows, self)
            async for item in built:
                self.report.rows += 1
                if isinstance(item, RejectedRow):
                    self._reject(item)
                    continue
                batch.append(item)
                if len(batch) >= (FIRST_BATCH if writing is None else BATCH):
                    if writing is not None:
                        await writing
                    await self.attachments.flush()  # blobs before the jobs that use them
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

    def _reject(self, err: RejectedRow) -> None:
        self.report.rejected += 1
        self.rejects.add(err)

    async def _flush(self, batch: list[Job]) -> None:
        await self.attachments.flush()
        rep = self.report
        for res in await self.queue.enqueue(batch):
            if res is Enqueued.NEW:
                rep.new += 1
            elif res is Enqueued.PENDING:
                rep.pending += 1
            elif res is Enqueued.SENT:
                rep.already_sent += 1
            elif res is Enqueued.DEAD:
                rep.already_dead += 1
            else:
                rep.duplicates += 1


def compose(r: Rendered, message_id: str, date: float) -> tuple[bytes, int]:
    """Message bytes and the offset where the body entity starts."""
    headers = [("From", format_sender(*r.sender))]
    if r.to:
        headers.append(("To", ", ".join(format_address(n, a) for n, a in r.to)))
    if r.cc:
        headers.append(("Cc", ", ".join(format_address(n, a) for n, a in r.cc)))
    if r.reply_to:
        headers.append(("Reply-To", ", ".join(format_address(n, a) for n, a in r.reply_to)))
    headers.append(("Subject", r.subject))
    headers += r.headers
    head = header_block(headers, message_id, date).encode("utf-8")
    if r.html is not None:
        boundary = "alt-" + message_id[1:17]
        entity = alternative_entity(r.text, r.html, boundary)
    else:
        entity = text_entity(r.text)
    return head + entity.encode("ascii"), len(head)
