"""A request's files as a job builder's attachments (intake/uploads.py): kept once however
many messages attach them, wrapped in by the worker as the files of a CSV send are."""

from __future__ import annotations

import email
import email.policy
import time

import pytest

from mailspool.errors import RejectedRow
from mailspool.intake.builder import MAX_MESSAGE_BYTES, JobBuilder, NoAttachments
from mailspool.intake.sources import Row
from mailspool.intake.uploads import Uploads
from mailspool.message.compose import with_attachments
from mailspool.message.render import Renderer


def builder() -> JobBuilder:
    return JobBuilder(
        renderer=Renderer.build(None, "news@example.com", "Hello"),
        campaign="up",
        attachments=NoAttachments(reason="none here"),
    )


def row(n: int) -> Row:
    return Row(n, {"to": f"p{n}@example.org", "text": "Hi."})


def test_a_file_attached_by_many_messages_is_one_blob_and_one_part() -> None:
    uploads = Uploads()
    data = b"%PDF-1.4 " + bytes(range(256)) * 40
    shared = uploads.add("terms.pdf", "application/pdf", data)
    same = uploads.add("other-name.pdf", "application/pdf", data)  # same bytes, another name
    b = builder().using(uploads)
    jobs = [b.build(row(i), time.time(), attach=(shared,)) for i in range(100)]
    jobs.append(b.build(row(100), time.time(), attach=(shared, same)))
    assert len(uploads.blobs) == 1 and next(iter(uploads.blobs.values())) == data
    assert {j.attachments[0] for j in jobs} == {uploads.resolve(shared)}
    assert [a.filename for a in jobs[-1].attachments] == ["terms.pdf", "other-name.pdf"]
    assert all(data not in j.message for j in jobs)
    wire = with_attachments(jobs[0], [uploads.part(ref) for ref in jobs[0].attachments])
    msg = email.message_from_bytes(wire, policy=email.policy.default)
    (part,) = msg.iter_attachments()  # type: ignore[attr-defined]
    assert (part.get_filename(), part.get_content_type()) == ("terms.pdf", "application/pdf")
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == data


def test_the_builder_it_came_from_still_refuses_files() -> None:
    uploads = Uploads()
    handle = uploads.add("a.txt", "text/plain", b"x")
    b = builder()
    b.using(uploads).build(row(1), time.time(), attach=(handle,))
    with pytest.raises(RejectedRow, match="none here"):
        b.build(row(2), time.time(), attach=(handle,))


def test_files_count_towards_the_message_size_limit() -> None:
    uploads = Uploads()
    handle = uploads.add("big.bin", "application/octet-stream", bytes(MAX_MESSAGE_BYTES // 4 * 3))
    with pytest.raises(RejectedRow) as info:
        builder().using(uploads).build(row(1), time.time(), attach=(handle,))
    assert info.value.field == "Attachment" and "byte limit" in info.value.reason
