"""The job builder: one row -> one validated job. Pure CPU work, no queue: run by the
producer, by the render processes (pool.py) and by the HTTP API alike.

A row's values are rendered (message/render.py), its key and job id worked out, its
attachments resolved (each file read once) and the message composed (message/compose.py);
anything wrong rejects the row, naming the field.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mailspool.errors import RejectedRow
from mailspool.intake.sources.base import Row
from mailspool.message.compose import compose
from mailspool.message.headers import check_filename
from mailspool.message.render import Rendered, Renderer
from mailspool.models import AttachmentRef, Job, job_id

MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class AttachmentPolicy(Protocol):
    """What a job builder asks about a row's attachments: :class:`Attachments` (files
    under a directory) or :class:`NoAttachments` (none allowed)."""

    def resolve(self, name: str) -> AttachmentRef:
        """The reference to the attachment ``name``; RejectedRow when it cannot be one."""

    def encoded_size(self, ref: AttachmentRef) -> int:
        """About how many bytes the attachment adds to a message."""


@dataclass(kw_only=True)
class Attachments:
    """Attachment files under ``base`` (a row may not reach outside it), each read once
    and kept as a blob until :meth:`take_pending` hands it on: the producer stores it in
    the queue before the jobs that reference it, a render process hands it to its
    parent, which :meth:`adopt` s it."""

    base: Path
    _refs: dict[str, AttachmentRef] = field(default_factory=dict, init=False)
    _pending: dict[str, bytes] = field(default_factory=dict, init=False)
    _sizes: dict[str, int] = field(default_factory=dict, init=False)
    #: digests handed on already: a blob a render process read again is not stored twice
    _taken: set[str] = field(default_factory=set, init=False)

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
        """Blobs read (or adopted) since the last call, by digest."""
        pending, self._pending = self._pending, {}
        self._taken.update(pending)
        return pending

    def adopt(self, blobs: dict[str, bytes]) -> None:
        """Blobs a render process read, to be handed on with this process's own."""
        for digest, data in blobs.items():
            if digest not in self._taken:
                self._pending[digest] = data


@dataclass(frozen=True, kw_only=True)
class NoAttachments:
    """Refuses every attachment with ``reason`` (field ``Attachment``): where a row may
    not attach files from this host's disk (the HTTP API)."""

    reason: str

    def resolve(self, name: str) -> AttachmentRef:
        raise RejectedRow("Attachment", self.reason)

    def encoded_size(self, ref: AttachmentRef) -> int:
        return 0


@dataclass(kw_only=True)
class JobBuilder:
    """Turns a row into a validated job of ``campaign``, or rejects it (RejectedRow).

    ``renderer`` renders the row; ``attachments`` resolves the files it attaches;
    ``key_column`` names the column whose value is the job's idempotency key (the job id
    is made from campaign and key), or None for the recipients' addresses.
    """

    renderer: Renderer
    campaign: str
    attachments: AttachmentPolicy
    key_column: str | None = None

    def build(self, row: Row, now: float) -> Job:
        """The row's job, created at ``now`` (its Date header)."""
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

    def build_rows(self, rows: Iterable[Row | RejectedRow]) -> Iterator[Job | RejectedRow]:
        """Each row's job, or its rejection (with the row number), in row order; a row
        the source could not read passes through as it came."""
        for item in rows:
            if isinstance(item, RejectedRow):
                yield item
                continue
            try:
                yield self.build(item, time.time())
            except RejectedRow as exc:
                yield exc.at_row(item.number)

    def _key(self, row: Row, r: Rendered) -> str:
        if self.key_column is None:
            return ",".join(sorted(a.lower() for a in r.recipients))
        if self.key_column not in row.values:
            raise RejectedRow(self.key_column, "no such column (the --key-column)")
        value = row.values[self.key_column]
        if value in (None, ""):
            raise RejectedRow(self.key_column, "the key column is empty")
        return str(value)
