"""An attachment's content type: guessed from its name, a declared one checked against it."""

from __future__ import annotations

import pytest

from mailspool.errors import RejectedRow
from mailspool.message.filetypes import attachment_type, guess_type


@pytest.mark.parametrize(
    ("name", "declared", "sent_as"),
    [
        ("a.pdf", None, "application/pdf"),
        ("a.PDF", "Application/PDF; x=1", "application/pdf"),  # lowercase, no parameters
        ("notes.txt", "text/plain; charset=utf-8", "text/plain"),
        ("a.xml", "application/xml", "application/xml"),  # another type of the extension
        ("a.jpg", "image/jpeg", "image/jpeg"),
        ("data.tar.gz", None, "application/gzip"),  # compressed as a whole: gzip, not tar
        ("data.csv.gz", "application/gzip", "application/gzip"),
        ("a.docx", "application/octet-stream", guess_type("a.docx")),  # said: "unknown"
        ("a.unknownext", None, "application/octet-stream"),
        ("a.unknownext", "application/x-custom", "application/x-custom"),
        ("README", "text/plain", "text/plain"),
    ],
)
def test_a_declared_type_that_agrees_with_the_name_is_taken(
    name: str, declared: str | None, sent_as: str
) -> None:
    assert attachment_type("f", name, declared) == sent_as


@pytest.mark.parametrize(
    ("name", "declared", "reason"),
    [
        ("invoice.pdf", "image/png", "image/png does not match the file name 'invoice.pdf'"),
        ("report.pdf.exe", "application/pdf", "does not match"),
        ("a.pdf", "pdf", "is not a content type"),
        ("a.pdf", "application/pdf\r\nBcc: x@example.com", "is not a content type"),
        ("a.bin", "text/plain\x00", "is not a content type"),
        ("a.bin", "", "is not a content type"),
    ],
)
def test_a_declared_type_that_disagrees_or_is_malformed_is_refused_naming_the_field(
    name: str, declared: str, reason: str
) -> None:
    with pytest.raises(RejectedRow) as info:
        attachment_type("attachments.0.content_type", name, declared)
    assert info.value.field == "attachments.0.content_type"
    assert reason in info.value.reason
