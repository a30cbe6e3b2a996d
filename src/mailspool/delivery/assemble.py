"""The bytes a worker sends for a job: its rendered message, wrapped with its attachments
(compose.with_attachments). The attachment blobs come from the store, each fetched and
encoded once per worker, however many jobs carry it."""

from __future__ import annotations

from mailspool.errors import MailspoolError
from mailspool.message.compose import attachment_part, with_attachments
from mailspool.models import AttachmentRef, Job
from mailspool.queue import Claiming


class Assembler:
    """Builds the message of each job, fetching attachments from ``store``."""

    def __init__(self, store: Claiming) -> None:
        self.store = store
        self._parts: dict[AttachmentRef, bytes] = {}

    async def message(self, job: Job) -> bytes:
        """The message to send. MailspoolError when it cannot be built (an attachment
        unreadable at intake, or missing from the store); QueueError when the store is
        unreachable."""
        if job.unreadable:
            raise MailspoolError(job.unreadable)
        parts = []
        for ref in job.attachments:
            # by reference, not digest: one file under two names makes two parts
            part = self._parts.get(ref)
            if part is None:
                blob = await self.store.get_blob(ref.digest)
                if blob is None:
                    raise MailspoolError(f"attachment {ref.filename} is missing from the store")
                part = self._parts[ref] = attachment_part(ref, blob)
            parts.append(part)
        return with_attachments(job, parts)
