"""Property-based: arbitrary text in every header value, display name, address, header
name, file name (a template's Attachment line, a file posted to the HTTP API as base64 or
as a form's file) and CSV cell, through every face, is either refused with a clear error
naming a field, or reaches the wire satisfying the invariant (mailspool.testing)."""

from __future__ import annotations

import csv
import email
import email.policy
import email.utils
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailspool.errors import RejectedRow
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.sources import open_source
from mailspool.message.compose import attachment_part
from mailspool.message.render import Renderer, Template
from mailspool.schedule import parse_timezone
from mailspool.testing import check_message
from tests.support.faces import FIELDS, FILE_DATA, TEMPLATE_FACES, attach_through, through
from tests.support.strategies import SPECIAL, TEXT

PAIRS = [(face, field) for field, faces in FIELDS.items() for face in faces]
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(pair=st.sampled_from(PAIRS), value=TEXT)
def test_any_text_in_any_field_is_refused_clearly_or_sent_soundly(
    pair: tuple[str, str], value: str
) -> None:
    face, field = pair
    with tempfile.TemporaryDirectory() as tmp:
        out = through(face, field, value, Path(tmp))
    if out.rejected:
        assert out.field and out.reason, out  # a clear error names a field
        return
    assert out.job is not None
    recipients = list(out.job.recipients)
    problems = check_message(out.job.sender, recipients, out.wire)
    assert not problems, (face, field, value, problems)
    if face in TEMPLATE_FACES and field != "address":
        # the template has one address slot: no value may add a recipient
        assert len(recipients) == 1, (face, field, value, recipients)


NAME = st.text(
    alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8")),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(name=NAME)
def test_any_file_name_is_refused_or_encoded_soundly(name: str) -> None:
    assume("/" not in name and "\x00" not in name and name not in (".", ".."))
    assume(len(name.encode()) <= 255)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(b"data")
        try:
            ref = Attachments(base=Path(tmp)).resolve(name)
        except RejectedRow as exc:
            assert exc.field == "Attachment" and exc.reason
            return
    head, _, _ = attachment_part(ref, b"data").partition(b"\r\n\r\n")
    assert head.isascii()
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    part = email.message_from_bytes(head + b"\r\n\r\nZGF0YQ==\r\n", policy=email.policy.default)
    # Python's email package drops the angle brackets around a whole value (utils.unquote)
    assert part.get_filename() == email.utils.unquote(name.strip())
    assert len(part.keys()) == 3, part.keys()  # no header written by the name


#: where an HTTP face names a file's name when it refuses it ("body": a form whose part
#: headers cannot be read, such as a name in RFC 2231 that is not UTF-8)
FILE_NAME_FIELDS = {
    "http_base64": ("attachments.0.filename",),
    "http_form": ("attachment.0.filename", "body"),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(NAME, TEXT), face=st.sampled_from(sorted(FILE_NAME_FIELDS)))
def test_any_file_name_posted_to_the_api_is_refused_or_sent_soundly(name: str, face: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = attach_through(face, name, Path(tmp))
    if out.rejected:
        assert out.field in FILE_NAME_FIELDS[face] and out.reason, (face, name, out)
        return
    assert out.job is not None
    problems = check_message(out.job.sender, list(out.job.recipients), out.wire)
    assert not problems, (face, name, problems)
    msg = email.message_from_bytes(out.wire, policy=email.policy.default)
    (part,) = msg.iter_attachments()  # type: ignore[attr-defined]
    assert part.get_filename() == email.utils.unquote(name.strip()), (face, name)
    assert part.get_content() == FILE_DATA
    assert len(part.keys()) == 3, part.keys()  # no header written by the name


@settings(max_examples=300, deadline=None)
@given(value=TEXT, face=st.sampled_from(["csv", "jsonl"]))
def test_any_text_as_a_recipients_timezone_is_refused_naming_the_column_or_a_zone(
    value: str, face: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if face == "csv":
            path = base / "rows.csv"
            text = io.StringIO(newline="")
            csv.writer(text).writerows([["Email", "Zone"], ["ann@example.com", value]])
            path.write_bytes(text.getvalue().encode("utf-8", "surrogatepass"))
            tpl = Template.parse("From: n@example.com\nTo: {{ Email }}\nSubject: s\n\nHi.\n")
            renderer = Renderer.build(tpl, None, None)
        else:
            path = base / "rows.jsonl"
            row = {"from": "n@example.com", "to": "ann@example.com", "subject": "s",
                   "text": "Hi.", "Zone": value}  # fmt: skip
            path.write_text(json.dumps(row) + "\n", encoding="utf-8")
            renderer = Renderer.build(None, None, None)
        builder = JobBuilder(
            renderer=renderer, campaign="tz", attachments=Attachments(base=base),
            timezone_column="Zone",
        )  # fmt: skip
        (item,) = list(builder.build_rows(open_source(path).rows()))
    if isinstance(item, RejectedRow):
        assert item.field and item.reason, item
        readable = not any("\ud800" <= c <= "\udfff" for c in value)
        if readable and "\x00" not in value:  # else the reader refuses the row first
            assert item.field == "Zone", item
        return
    assert item.timezone == "" or str(parse_timezone(item.timezone)) == item.timezone
