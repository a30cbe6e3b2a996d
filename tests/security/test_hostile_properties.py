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
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mailspool.errors import RejectedRow
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.sources import open_source
from mailspool.message.compose import attachment_part
from mailspool.message.render import Renderer, Template
from mailspool.models import CAMPAIGN_NAME
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


# -- campaign names, through every face that takes one ------------------------------------

CAMPAIGN_FACES = ("option", "campaign_command", "http_message", "http_control")
#: the app of the HTTP faces: no worker loops, an empty queue (every good name: 404)
_APP: list[Any] = []


def _app() -> Any:
    if not _APP:
        from mailspool.api.app import create_app
        from mailspool.api.auth import Tokens
        from mailspool.config import load_settings
        from mailspool.queue import MemoryQueue

        tokens = Tokens(["t" * 24])
        _APP.append(create_app(load_settings(), tokens, queue=MemoryQueue(), workers=0))
    return _APP[0]


def campaign_through(face: str, name: str) -> bool:
    """Whether ``face`` takes ``name`` as a campaign's name (a refusal raises nothing)."""
    from mailspool.api.bodies import MessageIn
    from mailspool.cli.parser import build_parser
    from mailspool.config import load_settings
    from mailspool.errors import ConfigError

    if face in ("option", "campaign_command"):
        argv = ["status", f"--campaign={name}"] if face == "option" else ["campaign", "pause"]
        args = build_parser().parse_args([*argv, "--", name] if face != "option" else argv)
        try:
            return load_settings(campaign=args.campaign).campaign == name
        except ConfigError as exc:
            assert "a campaign name is" in str(exc)
            return False
    if face == "http_message":
        try:
            MessageIn.model_validate({"to": "ann@example.com", "campaign": name})
        except ValidationError:
            return False
        return True
    import asyncio

    import httpx

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            # a lone surrogate has no UTF-8: its bytes as a client could still send them
            raw = name.encode("utf-8", "surrogatepass")
            path = f"/v1/campaigns/{urllib.parse.quote(raw, safe='')}/pause"
            return await c.post(path, headers={"Authorization": f"Bearer {'t' * 24}"})

    r = asyncio.run(post())
    assert r.status_code in (404, 422), r.text  # no such campaign, or refused
    return r.status_code == 404 and r.json() == {"detail": "no such campaign"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    face=st.sampled_from(CAMPAIGN_FACES),
    name=st.one_of(TEXT, st.from_regex(f"^{CAMPAIGN_NAME}$", fullmatch=True)),
)
def test_any_text_as_a_campaign_name_is_taken_only_if_it_follows_the_rule(
    face: str, name: str
) -> None:
    """A campaign's name names files and keys in every backend: each face that takes one
    (--campaign, mailspool campaign's NAME, a posted message's campaign, the campaign
    control routes) takes exactly the names of the one rule, models.CAMPAIGN_NAME."""
    assert campaign_through(face, name) is bool(re.fullmatch(CAMPAIGN_NAME, name)), (face, name)
