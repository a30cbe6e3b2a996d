"""multipart/form-data (RFC 7578), read from a body already in memory (the body limit
bounds it): the parts of a POST /v1/messages that carries files.

The body is split on its boundary here, byte-exact, since a file may hold any bytes; the
stdlib's email package parses each part's headers (quoted and RFC 2231 file names), as
the one-click unsubscribe form's are (unsubscribe.py). Header blocks must be UTF-8 (what
clients send for a name that is not ASCII); anything malformed is :class:`BadForm`.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass

CRLF = b"\r\n"
MAX_BOUNDARY = 70  # RFC 2046
MAX_HEADER_BYTES = 16 * 1024  # a part's header block


class BadForm(Exception):
    """The body is not a well-formed multipart/form-data body; the text says why."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part: its form field ``name``, the ``filename`` of a file part (None for a
    plain field), the ``content_type`` it declared (None: none) and its bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


_PARSER = email.parser.HeaderParser(policy=email.policy.HTTP)


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type."""
    head = _PARSER.parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = head.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= MAX_BOUNDARY:
        raise BadForm("multipart/form-data needs a boundary of 1 to 70 characters")
    if not boundary.isascii():
        raise BadForm("the multipart boundary is not ASCII")
    return boundary.encode("ascii")


def parse_form(content_type: str, body: bytes, max_parts: int) -> list[Part]:
    """The parts of ``body``, in order; BadForm when it is malformed or has more than
    ``max_parts`` parts."""
    delimiter = CRLF + b"--" + boundary_of(content_type)
    # the first delimiter may open the body: a CRLF in front makes every one alike
    chunks = (CRLF + body).split(delimiter)
    parts: list[Part] = []
    for chunk in chunks[1:]:  # chunks[0] is the preamble, ignored
        if chunk.startswith(b"--"):  # the close delimiter; what follows is the epilogue
            return parts
        if len(parts) == max_parts:
            raise BadForm(f"more than {max_parts} parts")
        parts.append(_part(chunk))
    raise BadForm("the body ends before the closing boundary")


def _part(chunk: bytes) -> Part:
    # after the delimiter: optional transport padding, CRLF, headers, CRLF CRLF, content
    line_end = chunk.find(CRLF)
    if line_end < 0 or chunk[:line_end].strip(b" \t"):
        raise BadForm("a boundary line does not end with CRLF")
    rest = chunk[line_end + 2 :]
    if rest.startswith(CRLF):
        raw_head, data = b"", rest[2:]
    else:
        raw_head, sep, data = rest.partition(CRLF + CRLF)
        if not sep:
            raise BadForm("a part's headers do not end with a blank line")
    if len(raw_head) > MAX_HEADER_BYTES:
        raise BadForm(f"a part's headers are over {MAX_HEADER_BYTES} bytes")
    try:
        text = raw_head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadForm("a part's headers are not UTF-8") from None
    head = _PARSER.parsestr(text + "\r\n\r\n")
    disposition = head.get("content-disposition")
    if disposition is None or head.get_content_disposition() != "form-data":
        raise BadForm("every part needs Content-Disposition: form-data")
    if disposition.defects:
        raise BadForm(f"a malformed Content-Disposition: {str(disposition)[:200]!r}")
    name = head.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise BadForm("every part needs a name (Content-Disposition: form-data; name=...)")
    filename = head.get_filename()
    declared = head.get("content-type")
    return Part(name, filename, None if declared is None else str(declared), data)
