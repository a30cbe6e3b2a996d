"""Every way in, in-process: a value put into one field of a message through a CSV cell, a
JSONL field, a template variable, a template file, an HTTP message or an HTTP template,
and what comes out: the row's rejection, or the message as it would go on the wire. An
attachment's file name likewise, through a template's Attachment line (a file on disk),
an HTTP message's base64 attachment and a file part of an HTTP form (:func:`attach_through`).

Each face runs the project's own code for it (the source reader, the renderer and job
builder the producer uses, the API's body parser and template parser), so a test over
all faces checks the one validation they share.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mailspool.api.attachments import SizeLimits, read_body
from mailspool.api.intake import Invalid, direct_values, split_body
from mailspool.api.templates import parse_template
from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.sources import Row, open_source
from mailspool.message.compose import attachment_part, with_attachments
from mailspool.message.render import Renderer, Template
from mailspool.models import Job

FACES = (
    "csv_cell",
    "jsonl_field",
    "template_variable",
    "template_file",
    "http_message",
    "http_template",
)
#: the fields a hostile value may be put into, and the faces that can put it there
FIELDS = {
    "subject": FACES,
    "display_name": FACES,
    "header_value": FACES,
    "address": FACES,
    "angle_address": FACES,
    "header_name": ("jsonl_field", "http_message"),
}
#: faces whose address fields come from a template's slots (the others' are lists)
TEMPLATE_FACES = ("csv_cell", "template_variable", "template_file", "http_template")
#: the ways an attachment's file name comes in
FILE_FACES = ("template_attachment", "http_base64", "http_form")
FILE_DATA = b"%PDF-1.4 data"
LIMITS = SizeLimits(body=1 << 20, per_file=1 << 20, per_request=1 << 20)
SENDER = "news@example.com"
RECIPIENT = "ann@example.com"


@dataclass
class Outcome:
    """A rejection (``field``, ``reason``), or a job and its bytes on the wire."""

    field: str | None = None
    reason: str | None = None
    job: Job | None = None
    wire: bytes = b""

    @property
    def rejected(self) -> bool:
        return self.field is not None


def template_text(field: str, value: str | None) -> str:
    """The template of the template faces: ``value`` in ``field`` (a constant in the
    file) or the variable ``V`` there."""
    v = "{{ V }}" if value is None else value
    name = v if field == "display_name" else "Ann"
    to = {"address": v, "angle_address": f"Ann <{v}>"}.get(field, f"{name} <{{{{ Email }}}}>")
    subject = v if field == "subject" else "Hello"
    tag = v if field == "header_value" else "t"
    return f"From: News <{SENDER}>\nTo: {to}\nSubject: {subject}\nX-Tag: {tag}\n\nHi.\n"


def direct_row(field: str, value: str) -> dict[str, Any]:
    """A direct-mode row (a JSONL line, an HTTP message) with ``value`` in ``field``."""
    row: dict[str, Any] = {
        "from": f"News <{SENDER}>",
        "to": f"Ann <{RECIPIENT}>",
        "subject": "Hello",
        "text": "Hi.",
        "headers": {"X-Tag": "t"},
    }
    if field == "subject":
        row["subject"] = value
    elif field == "display_name":
        row["to"] = f'"{value}" <{RECIPIENT}>'
    elif field == "header_value":
        row["headers"] = {"X-Tag": value}
    elif field == "address":
        row["to"] = value
    elif field == "angle_address":
        row["to"] = f"Ann <{value}>"
    elif field == "header_name":
        row["headers"] = {value: "v"}
    return row


def build(renderer: Renderer, rows: Iterable[Row | RejectedRow], base: Path) -> Outcome:
    builder = JobBuilder(renderer=renderer, campaign="faces", attachments=Attachments(base=base))
    for row in rows:
        if isinstance(row, RejectedRow):
            return Outcome(row.field, row.reason)
        try:
            job = builder.build(row, time.time())
        except RejectedRow as exc:
            return Outcome(exc.field, exc.reason)
        return Outcome(job=job, wire=wire_bytes(job, base))
    return Outcome("(row)", "no row was read")


def wire_bytes(job: Job, base: Path) -> bytes:
    """The message as the worker sends it: attachments wrapped in."""
    parts = [attachment_part(ref, (base / ref.filename).read_bytes()) for ref in job.attachments]
    return with_attachments(job, parts)


def through(face: str, field: str, value: str, tmp: Path) -> Outcome:
    """``value`` in ``field`` of a message that comes in through ``face``."""
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return _through(face, field, value, tmp)
    except MailspoolError as exc:  # a template refused as a whole, a source unreadable
        return Outcome(type(exc).__name__, str(exc))
    except Invalid as exc:  # the HTTP body, before any rendering
        return Outcome(exc.errors[0].field, exc.errors[0].reason)


def _through(face: str, field: str, value: str, tmp: Path) -> Outcome:
    if face == "csv_cell":
        path = tmp / "rows.csv"
        text = io.StringIO(newline="")
        csv.writer(text).writerows([["V", "Email"], [value, RECIPIENT]])
        try:  # \udc80-\udcff: the bytes a reader escapes (invalid UTF-8 in the file)
            data = text.getvalue().encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # another lone surrogate: its bytes as they are
            data = text.getvalue().encode("utf-8", "surrogatepass")
        path.write_bytes(data)
        tpl = Template.parse(template_text(field, None))
        return build(Renderer.build(tpl, None, None), open_source(path).rows(), tmp)
    if face == "jsonl_field":
        path = tmp / "rows.jsonl"
        path.write_text(json.dumps(direct_row(field, value)) + "\n", encoding="utf-8")
        return build(Renderer.build(None, None, None), open_source(path).rows(), tmp)
    if face == "template_variable":
        tpl = Template.parse(template_text(field, None))
        rows = [Row(2, {"V": value, "Email": RECIPIENT})]
        return build(Renderer.build(tpl, None, None), rows, tmp)
    if face == "template_file":
        path = tmp / "message.txt"
        path.write_text(template_text(field, value), encoding="utf-8", errors="surrogatepass")
        tpl = Template.load(path)
        return build(Renderer.build(tpl, None, None), [Row(2, {"Email": RECIPIENT})], tmp)
    if face == "http_message":
        body = json.dumps(direct_row(field, value)).encode()
        (msg,) = split_body(body).messages
        return build(Renderer.build(None, None, None), [Row(1, direct_values(msg))], tmp)
    if face == "http_template":
        tpl = parse_template("faces", template_text(field, None), None)
        rows = [Row(1, {"V": value, "Email": RECIPIENT})]
        return build(Renderer.build(tpl, None, None), rows, tmp)
    raise ValueError(f"no face {face}")


def attach_through(face: str, name: str, tmp: Path) -> Outcome:
    """A message attaching FILE_DATA as ``name``, through ``face``: refused naming a
    field, or the job and its bytes on the wire. ``template_attachment`` needs ``name``
    to be a file name the file system takes."""
    tmp.mkdir(parents=True, exist_ok=True)
    if face == "template_attachment":
        (tmp / name).write_bytes(FILE_DATA)
        tpl = Template.parse(
            f"From: {SENDER}\nTo: {{{{ Email }}}}\nSubject: s\nAttachment: {{{{ F }}}}\n\nHi.\n"
        )
        return build(
            Renderer.build(tpl, None, None), [Row(2, {"Email": RECIPIENT, "F": name})], tmp
        )
    message = {"from": SENDER, "to": RECIPIENT, "subject": "s", "text": "Hi."}
    if face == "http_base64":
        encoded = base64.b64encode(FILE_DATA).decode()
        message["attachments"] = [{"filename": name, "content_base64": encoded}]
        ctype, body = "application/json", json.dumps(message).encode()
    elif face == "http_form":
        ctype, body = form(json.dumps(message).encode(), name, FILE_DATA)
    else:
        raise ValueError(f"no face {face}")
    try:
        received = read_body(ctype, body, LIMITS)
    except Invalid as exc:
        return Outcome(exc.errors[0].field, exc.errors[0].reason)
    if received.errors:
        return Outcome(received.errors[0].field, received.errors[0].reason)
    builder = JobBuilder(
        renderer=Renderer.build(None, None, None), campaign="faces", attachments=received.uploads
    )
    (msg,), (attach,) = received.messages, received.attach
    try:
        job = builder.build(Row(1, direct_values(msg)), time.time(), attach=attach)
    except RejectedRow as exc:
        return Outcome(exc.field, exc.reason)
    parts = [received.uploads.part(ref) for ref in job.attachments]
    return Outcome(job=job, wire=with_attachments(job, parts))


def form(message: bytes, filename: str, data: bytes) -> tuple[str, bytes]:
    """A multipart/form-data body (Content-Type, bytes): the message part, and one file
    named ``filename``: quoted when it is printable ASCII, else in RFC 2231's encoding,
    which carries any character (a lone surrogate as the bytes Python would write)."""
    boundary = "b0undary-" + "x" * 20
    if all(" " <= c <= "~" and c not in '"\\' for c in filename):
        param = f'filename="{filename}"'
    else:
        param = "filename*=utf-8''" + quote(filename.encode("utf-8", "surrogatepass"), safe="")
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=message\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode() + message
    body += (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=attachment; {param}\r\n\r\n"
    ).encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body
