"""The attachments that came with one HTTP request, as a job builder's attachment policy
(builder.AttachmentPolicy): files already checked and decoded (api/attachments.py),
named by the handle :meth:`Uploads.add` gave each.

Content-addressed as the files of a CSV send are: a file is a blob under its SHA-256,
kept once however many messages of the request attach it (and whatever names they give
it), and stored once in the queue before the jobs that reference it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mailspool.errors import RejectedRow
from mailspool.message.compose import attachment_part, encoded_size
from mailspool.models import AttachmentRef


@dataclass
class Uploads:
    """A request's files by handle, their blobs by digest and their MIME parts (each
    made once, for signing)."""

    _refs: dict[str, AttachmentRef] = field(default_factory=dict)
    _blobs: dict[str, bytes] = field(default_factory=dict)
    _parts: dict[AttachmentRef, bytes] = field(default_factory=dict)

    def add(self, filename: str, content_type: str, data: bytes) -> str:
        """A handle for a checked file, to attach it to messages (JobBuilder.build's
        ``attach``)."""
        ref = AttachmentRef(hashlib.sha256(data).hexdigest(), filename, content_type)
        handle = str(len(self._refs))
        self._refs[handle] = ref
        self._blobs.setdefault(ref.digest, data)
        return handle

    @property
    def blobs(self) -> dict[str, bytes]:
        """The content of every file, once per digest."""
        return self._blobs

    @property
    def size(self) -> int:
        """The bytes of every file, once per digest."""
        return sum(map(len, self._blobs.values()))

    def resolve(self, name: str) -> AttachmentRef:
        ref = self._refs.get(name)
        if ref is None:  # a template's Attachment line: API templates have none
            raise RejectedRow("Attachment", f"{name[:100]!r} is not a file of this request")
        return ref

    def encoded_size(self, ref: AttachmentRef) -> int:
        return encoded_size(len(self._blobs[ref.digest]))

    def part(self, ref: AttachmentRef) -> bytes:
        part = self._parts.get(ref)
        if part is None:
            part = self._parts[ref] = attachment_part(ref, self._blobs[ref.digest])
        return part
