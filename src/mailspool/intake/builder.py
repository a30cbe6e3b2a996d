"""The job builder: one row -> one validated job. Pure CPU work, no queue: run by the
producer, by the render processes (pool.py) and by the HTTP API alike.

A row's values are rendered (message/render.py), its key and job id worked out, its
attachments resolved (each file read once) and the message composed (message/compose.py);
anything wrong rejects the row, naming the field. With a :class:`Deliverability` the
message also gets its one-click unsubscribe link and its DKIM signature
(intake/deliverability.py).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mailspool.errors import ConfigError, RejectedRow
from mailspool.intake.deliverability import Deliverability, add_unsubscribe, sign
from mailspool.intake.sources.base import Row
from mailspool.message.compose import attachment_part, compose, encoded_size
from mailspool.message.filetypes import attachment_type
from mailspool.message.headers import check_filename
from mailspool.message.optout import DEFAULT_LIST, check_list_name
from mailspool.message.render import Rendered, Renderer
from mailspool.message.unsubscribe import MAX_NAME_BYTES, PLACEHOLDER, TEMPLATE_VARIABLE
from mailspool.models import AttachmentRef, Job, job_id
from mailspool.schedule import parse_timezone

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
#: encoded attachment parts kept for signing (a part evicted is read from its file again)
MAX_CACHED_PARTS = 64 * 1024 * 1024


class AttachmentPolicy(Protocol):
    """What a job builder asks about a row's attachments: :class:`Attachments` (files
    under a directory), :class:`NoAttachments` (none allowed) or the files that came
    with an HTTP request (intake/uploads.py)."""

    def resolve(self, name: str) -> AttachmentRef:
        """The reference to the attachment ``name``; RejectedRow when it cannot be one."""

    def encoded_size(self, ref: AttachmentRef) -> int:
        """About how many bytes the attachment adds to a message."""

    def part(self, ref: AttachmentRef) -> bytes:
        """The MIME part the worker will wrap in for ``ref`` (compose.attachment_part),
        to sign the message with it; RejectedRow when it cannot be made."""


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
    _paths: dict[AttachmentRef, Path] = field(default_factory=dict, init=False)
    _parts: OrderedDict[AttachmentRef, bytes] = field(default_factory=OrderedDict, init=False)
    _parts_size: int = field(default=0, init=False)

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
        ctype = attachment_type("Attachment", filename)
        ref = AttachmentRef(hashlib.sha256(data).hexdigest(), filename, ctype)
        self._refs[key] = ref
        self._pending[ref.digest] = data
        self._sizes[ref.digest] = len(data)
        self._paths[ref] = path
        return ref

    def part(self, ref: AttachmentRef) -> bytes:
        """The attachment's MIME part, from a cache of the most recent ones (at most
        MAX_CACHED_PARTS bytes), else made from its blob or read from its file again
        (rejected if the file has changed since)."""
        part = self._parts.get(ref)
        if part is not None:
            self._parts.move_to_end(ref)
            return part
        data = self._pending.get(ref.digest)
        if data is None:
            data = self._read_again(ref)
        part = attachment_part(ref, data)
        if len(part) <= MAX_CACHED_PARTS:
            self._parts[ref] = part
            self._parts_size += len(part)
            while self._parts_size > MAX_CACHED_PARTS:
                _, old = self._parts.popitem(last=False)
                self._parts_size -= len(old)
        return part

    def _read_again(self, ref: AttachmentRef) -> bytes:
        path = self._paths.get(ref)
        if path is None:
            raise RejectedRow("Attachment", f"{ref.filename!r} was not resolved here")
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = f"cannot read {ref.filename!r}: {exc.strerror or exc}"
            raise RejectedRow("Attachment", reason) from None
        if hashlib.sha256(data).hexdigest() != ref.digest:
            raise RejectedRow("Attachment", f"{ref.filename!r} changed while being queued")
        return data

    def encoded_size(self, ref: AttachmentRef) -> int:
        return encoded_size(self._sizes.get(ref.digest, 0))

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

    def part(self, ref: AttachmentRef) -> bytes:
        raise RejectedRow("Attachment", self.reason)


@dataclass(kw_only=True)
class JobBuilder:
    """Turns a row into a validated job of ``campaign``, or rejects it (RejectedRow).

    ``renderer`` renders the row; ``attachments`` resolves the files it attaches;
    ``key_column`` names the column whose value is the job's idempotency key (the job id
    is made from campaign and key), or None for the recipients' addresses;
    ``deliverability``: the DKIM keys, unsubscribe links and list of its messages (none
    by default).
    """

    renderer: Renderer
    campaign: str
    attachments: AttachmentPolicy
    key_column: str | None = None
    deliverability: Deliverability = field(default_factory=Deliverability)
    #: the column naming each recipient's timezone for the send windows (schedule.py)
    timezone_column: str | None = None
    #: From domain -> whether a key signs it
    _signs: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        d = self.deliverability
        if d.unsubscribe is not None and len(self.campaign.encode()) > MAX_NAME_BYTES:
            raise ConfigError(
                f"campaign {self.campaign[:120]!r}: longer than {MAX_NAME_BYTES} bytes, too"
                " long for an unsubscribe link"
            )

    def signs(self, domain: str) -> bool:
        """Whether a message from ``domain`` gets a DKIM signature."""
        found = self._signs.get(domain)
        if found is None:
            signer = self.deliverability.signer
            found = signer is not None and signer.has_key_for(domain)
            if len(self._signs) < 1024:
                self._signs[domain] = found
        return found

    def using(self, attachments: AttachmentPolicy) -> JobBuilder:
        """This builder, resolving attachments with ``attachments`` instead (the files of
        one HTTP request); it shares this one's DKIM lookups."""
        other = replace(self, attachments=attachments)
        other._signs = self._signs
        return other

    def build(
        self,
        row: Row,
        now: float,
        *,
        list_name: str | None = None,
        check_from: Callable[[str], None] | None = None,
        attach: Sequence[str] = (),
    ) -> Job:
        """The row's job, created at ``now`` (its Date header), for the builder's list or
        for ``list_name`` (a message that names its own: the HTTP API). ``check_from``
        is given the From address once the job is built, to refuse it (RejectedRow):
        the job's ``sender`` is the envelope sender, a VERP address with --return-path.
        ``attach``: names of attachments the row did not render (an HTTP message's
        files), resolved by the builder's attachments after those it did."""
        d = self.deliverability
        values = row.values
        if d.unsubscribe is not None:  # the URL is known once the recipient is
            values = {**values, TEMPLATE_VARIABLE: PLACEHOLDER}
        r = self.renderer.render(values)
        key = self._key(row, r)
        jid = job_id(self.campaign, key)
        domain = r.sender[1].rpartition("@")[2]
        if d.dkim_required and not self.signs(domain):
            raise RejectedRow("From", f"no DKIM key for the domain {domain} (--dkim-required)")
        if list_name is None:
            list_name = d.list_name
        else:
            try:
                check_list_name(list_name)
            except ValueError as exc:
                raise RejectedRow("list", str(exc)) from None
        unfolded = (
            add_unsubscribe(r, d.unsubscribe, list_name, self.campaign)
            if d.unsubscribe is not None
            else ()
        )
        message_id = f"<{jid}@{domain}>"
        names = [*r.attachments, *attach] if attach else r.attachments
        refs = tuple(self.attachments.resolve(a) for a in names) if names else ()
        message, offset = compose(r, message_id, now, unfolded)
        size = len(message)
        if refs:
            size += sum(self.attachments.encoded_size(ref) for ref in refs)
        if size > MAX_MESSAGE_BYTES:
            field_name = "Attachment" if refs else "body"
            raise RejectedRow(
                field_name, f"message is {size} bytes, over the {MAX_MESSAGE_BYTES} byte limit"
            )
        job = Job(
            id=jid,
            campaign=self.campaign,
            key=key,
            message_id=message_id,
            sender=r.sender[1] if d.return_path is None else d.return_path.address(jid),
            recipients=tuple(r.recipients),
            message=message,
            row=row.number,
            body_offset=offset,
            attachments=refs,
            created_at=now,
            list_name="" if list_name == DEFAULT_LIST else list_name,
            timezone=self._timezone(row),
        )
        if d.signer is not None:
            sign(job, d.signer, [self.attachments.part(ref) for ref in refs])
        if check_from is not None:
            check_from(r.sender[1])
        return job

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

    def _timezone(self, row: Row) -> str:
        """The row's timezone column, checked ("" when there is none or it is empty)."""
        column = self.timezone_column
        if column is None:
            return ""
        if column not in row.values:
            raise RejectedRow(column, "no such column (the --timezone-column)")
        value = row.values[column]
        if value in (None, ""):
            return ""
        try:
            return str(parse_timezone(str(value)))
        except ValueError as exc:
            raise RejectedRow(column, str(exc)) from None

    def _key(self, row: Row, r: Rendered) -> str:
        if self.key_column is None:
            return ",".join(sorted(a.lower() for a in r.recipients))
        if self.key_column not in row.values:
            raise RejectedRow(self.key_column, "no such column (the --key-column)")
        value = row.values[self.key_column]
        if value in (None, ""):
            raise RejectedRow(self.key_column, "the key column is empty")
        return str(value)
