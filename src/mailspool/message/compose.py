"""Build RFC 5322 message bytes from rendered parts. Pure functions, no I/O.

:func:`compose` makes a rendered message's bytes, as stored in a job (without its
attachments); :func:`with_attachments` makes the bytes sent for a job, the attachment
parts wrapped around its body as multipart/mixed (the worker fetches the blobs).

Hand-built instead of email.message.EmailMessage: the stdlib policy machinery costs
more per message than the whole SMTP exchange, and we only need a few fixed shapes
(text, text+html alternative, and a multipart/mixed wrapper for attachments).
"""

from __future__ import annotations

import base64
import email.quoprimime
from collections.abc import Sequence
from email.header import Header
from email.utils import formataddr, formatdate
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote

from mailspool.message.headers import safe_filename
from mailspool.models import AttachmentRef, Job

if TYPE_CHECKING:  # only the type: the worker composes without the template engine
    from mailspool.message.render import Rendered

CRLF = "\r\n"
MAX_LINE = 998


@lru_cache(maxsize=64)
def format_sender(name: str, addr: str) -> str:
    """format_address for the sender, which is the same on most rows."""
    return format_address(name, addr)


def format_address(name: str, addr: str) -> str:
    return formataddr((name, addr), charset="utf-8") if name else addr


def encode_header(name: str, value: str) -> str:
    """One header line (folded, RFC 2047-encoded when not ASCII), without the final CRLF."""
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}"
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep=CRLF)
    if charset == "us-ascii" and any(len(line) > MAX_LINE - 10 for line in encoded.split(CRLF)):
        # a run without spaces cannot be folded: split it into encoded words instead
        encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}"


def encode_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, encoded body with CRLF line endings)."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if not normalized.endswith("\n"):
        normalized += "\n"
    if normalized.isascii() and (
        len(normalized) <= MAX_LINE or max(map(len, normalized.split("\n"))) <= MAX_LINE
    ):
        return "7bit", normalized.replace("\n", CRLF)
    latin = normalized.encode("utf-8").decode("latin-1")
    return "quoted-printable", email.quoprimime.body_encode(latin, eol=CRLF)


def text_entity(text: str, subtype: str = "plain") -> str:
    cte, body = encode_body(text)
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}{body}"
    )


def unique_boundary(boundary: str, *contents: str) -> str:
    """``boundary``, or a variant of it, that occurs in none of ``contents`` (a body that
    contained the boundary line would end its part early, or forge a new one)."""
    candidate, n = boundary, 0
    while any(candidate in c for c in contents):
        n += 1
        candidate = f"{boundary}.{n}"
    return candidate


def alternative_entity(text: str, html: str, boundary: str) -> str:
    plain, rich = text_entity(text), text_entity(html, "html")
    boundary = unique_boundary(boundary, plain, rich)
    return (
        f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'
        f"--{boundary}{CRLF}{plain}{CRLF}"
        f"--{boundary}{CRLF}{rich}{CRLF}"
        f"--{boundary}--{CRLF}"
    )


@lru_cache(maxsize=4)
def _date_header(second: int) -> str:
    # the same second for thousands of messages at enqueue: format it once
    return formatdate(second, localtime=False, usegmt=True)


def header_block(
    headers: list[tuple[str, str]],
    message_id: str,
    date: float,
    unfolded: Sequence[tuple[str, str]] = (),
) -> str:
    """The header section: ``headers`` encoded and folded, then ``unfolded`` (ASCII, each
    on one line, which must stay under 998 characters)."""
    lines = [
        f"Date: {_date_header(int(date))}",
        *(encode_header(name, value) for name, value in headers),
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    if unfolded:
        lines[-2:-2] = [f"{name}: {value}" for name, value in unfolded]
    return CRLF.join(lines) + CRLF


# RFC 2231 attribute-char: what may stand unencoded in an extended parameter value
_ATTRIBUTE_CHARS = "!#$&+-.^_`|~"


def mime_parameter(name: str, value: str) -> str:
    """``name="value"`` (quoted-string) for ASCII, else ``name*=utf-8''%XX...``
    (RFC 2231), never an RFC 2047 word inside quotes, which RFC 2047 forbids."""
    if value.isascii():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"'
    return f"{name}*=utf-8''{quote(value, safe=_ATTRIBUTE_CHARS)}"


def attachment_part(ref: AttachmentRef, data: bytes) -> bytes:
    """A base64 MIME part for one attachment; cached by the caller per digest."""
    name = safe_filename(ref.filename)  # checked at intake; jobs stored before were not
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (
        f"Content-Type: {ref.content_type}; {mime_parameter('name', name)}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}"
        f"Content-Disposition: attachment; {mime_parameter('filename', name)}{CRLF}{CRLF}"
    )
    return head.encode("ascii") + encoded


def encoded_size(size: int) -> int:
    """About how many bytes an attachment of ``size`` bytes adds to a message: base64 in
    76-character CRLF lines, and the part's headers."""
    return (size + 2) // 3 * 4 * 78 // 76 + 300


def wrap_mixed(message: bytes, body_offset: int, parts: Sequence[bytes], boundary: str) -> bytes:
    """Insert attachment parts: headers, then multipart/mixed of the body entity and parts.

    The boundary depends on the body and the parts only, never on the header block: the
    DKIM signature lines put in front of a signed message must not change it."""
    b = boundary.encode("ascii")
    n = 0
    heads = [p.partition(b"\r\n\r\n")[0] for p in parts]  # base64 itself has no "-"
    while message.find(b, body_offset) >= 0 or any(b in h for h in heads):
        n += 1
        b = f"{boundary}.{n}".encode("ascii")
    out = [
        message[:body_offset],
        b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n',
        b"--" + b + b"\r\n",
        message[body_offset:],
    ]
    for part in parts:
        out += [b"\r\n--" + b + b"\r\n", part]
    out.append(b"\r\n--" + b + b"--\r\n")
    return b"".join(out)


def mixed_boundary(message_id: str) -> str:
    """The multipart/mixed boundary of a message: from its Message-ID, which a retry of
    refused recipients (a job of its own, with an id of its own) keeps, so that its bytes
    are those that were signed."""
    token = "".join(c for c in message_id[:40] if c.isascii() and c.isalnum())[:16]
    return "mix-" + (token or "0")


def with_attachments(job: Job, parts: Sequence[bytes]) -> bytes:
    """The message to send for a job: the stored message as it is, or with ``parts``
    (one :func:`attachment_part` per ``job.attachments``, in order) around its body.
    The same bytes for the same message and parts, on any worker at any time: a DKIM
    signature made at intake over them (intake/builder.py) still verifies."""
    if not job.attachments:
        return job.message
    return wrap_mixed(job.message, job.body_offset, parts, mixed_boundary(job.message_id))


def compose(
    r: Rendered, message_id: str, date: float, unfolded: Sequence[tuple[str, str]] = ()
) -> tuple[bytes, int]:
    """A rendered message's bytes (attachments apart: see with_attachments), and the
    offset where the body entity starts. ``unfolded``: header fields written as they are,
    each on one line (List-Unsubscribe: a URL is better not folded)."""
    headers = [("From", format_sender(*r.sender))]
    if r.to:
        headers.append(("To", ", ".join(format_address(n, a) for n, a in r.to)))
    if r.cc:
        headers.append(("Cc", ", ".join(format_address(n, a) for n, a in r.cc)))
    if r.reply_to:
        headers.append(("Reply-To", ", ".join(format_address(n, a) for n, a in r.reply_to)))
    headers.append(("Subject", r.subject))
    headers += r.headers
    head = header_block(headers, message_id, date, unfolded).encode("utf-8")
    if r.html is not None:
        boundary = "alt-" + message_id[1:17]
        entity = alternative_entity(r.text, r.html, boundary)
    else:
        entity = text_entity(r.text)
    return head + entity.encode("ascii"), len(head)
