"""Hostile input through every way in: each case below got through once. Each is sent
through every face that can carry it (tests/support/faces.py), and must be refused with the
field named, or reach the wire satisfying the invariant of mailspool.testing."""

from __future__ import annotations

import csv
import email
import email.policy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.api.templates import parse_template
from mailspool.errors import RejectedRow, TemplateError
from mailspool.intake.builder import Attachments
from mailspool.intake.sources import Row
from mailspool.message.addresses import MAX_LOCAL_PART
from mailspool.message.compose import attachment_part, mime_parameter
from mailspool.message.headers import PROTECTED
from mailspool.message.render import Renderer, Template
from mailspool.models import AttachmentRef
from mailspool.testing import RecordingSMTPServer, check_message
from tests.support.cli import Result
from tests.support.faces import (
    FACES,
    FIELDS,
    FILE_FACES,
    RECIPIENT,
    SENDER,
    TEMPLATE_FACES,
    Outcome,
    attach_through,
    build,
    through,
)

#: every control character but TAB, and the Unicode line separators
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F, 0x85, 0x9F)]
CONTROLS += ["\u2028", "\u2029"]


def assert_sound(out: Outcome, bcc: tuple[str, ...] = ()) -> None:
    assert out.job is not None
    problems = check_message(out.job.sender, list(out.job.recipients), out.wire, bcc=bcc)
    assert not problems, problems


def refused(out: Outcome, field: str | None = None) -> None:
    assert out.rejected, f"accepted: {out.wire[:400]!r}"
    if field is not None:
        assert out.field is not None and out.field.lower() == field.lower(), out


# -- 1: header names -------------------------------------------------------------------


@pytest.mark.parametrize("face", FIELDS["header_name"])
@pytest.mark.parametrize(
    "name",
    [
        "X-Foo: bar\r\nBcc: x@evil.example\r\nX-A",
        "X-Foo\nX-A",
        "X-Foo\r",
        "X Foo",
        "X-Foo:",
        "X-Föö",
        "X-" + "a" * 80,
        "X-\x00",
        "",
    ],
)
def test_a_header_name_outside_the_grammar_is_refused(face: str, name: str, tmp_path: Path) -> None:
    out = through(face, "header_name", name, tmp_path)
    refused(out)
    assert out.field is not None and out.field.startswith("headers")


@pytest.mark.parametrize("face", FIELDS["header_name"])
def test_a_header_name_in_the_grammar_is_sent(face: str, tmp_path: Path) -> None:
    out = through(face, "header_name", "X-Weird_Name!#$%&'*+.^`|~", tmp_path)
    assert_sound(out)
    assert b"\r\nX-Weird_Name!#$%&'*+.^`|~: v\r\n" in out.wire


# -- 2: control characters in header values and display names --------------------------


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("field", ["subject", "display_name", "header_value"])
@pytest.mark.parametrize("ch", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_character_in_a_header_is_refused(
    face: str, field: str, ch: str, tmp_path: Path
) -> None:
    if face == "template_file" and ch in "\r\n\x85\u2028\u2029":
        pytest.skip("a line break in a template file is the file's own line")
    out = through(face, field, f"a{ch}b", tmp_path)
    refused(out)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("field", ["subject", "display_name", "header_value"])
def test_a_tab_in_a_header_is_kept(face: str, field: str, tmp_path: Path) -> None:
    out = through(face, field, "a\tb", tmp_path)
    assert_sound(out)


# -- 3: an address slot holds one address ----------------------------------------------


@pytest.mark.parametrize("face", ["csv_cell", "template_variable", "http_template"])
@pytest.mark.parametrize(
    "value",
    [
        "v@example.com>, <bob@evil.example",
        "v@example.com>; <bob@evil.example",
        "v@example.com> <bob@evil.example",
        'v@example.com>, "x" <bob@evil.example',
    ],
)
def test_a_value_in_an_address_slot_cannot_add_a_recipient(
    face: str, value: str, tmp_path: Path
) -> None:
    # To: Ann <{{ V }}>, with the hostile value as V
    refused(through(face, "angle_address", value, tmp_path), "To")


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize(
    "value",
    ["a@example.com, bob@evil.example", "a@example.com; bob@evil.example", '"a@example.com'],
)
def test_a_whole_address_slot_holds_one_address(face: str, value: str, tmp_path: Path) -> None:
    out = through(face, "address", value, tmp_path)
    if face not in TEMPLATE_FACES or face == "template_file":
        # a direct-mode "to" and a template's own text are lists by design: each
        # address in them is one recipient, as written
        if not out.rejected:
            assert_sound(out)
        return
    refused(out, "To")


def test_an_http_to_list_item_holds_one_address(tmp_path: Path) -> None:
    from mailspool.api.intake import direct_values, split_body

    body = b'{"from": "news@example.com", "to": ["a@example.com, x@evil.example"], "text": "b"}'
    (msg,) = split_body(body).messages
    with pytest.raises(RejectedRow) as info:
        Renderer.build(None, None, None).render(direct_values(msg))
    assert info.value.field == "To" and "one address" in info.value.reason


# -- 4: the local part ------------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
def test_a_local_part_over_64_octets_is_refused(face: str, tmp_path: Path) -> None:
    local = "a" * (MAX_LOCAL_PART + 1)
    refused(through(face, "address", f"{local}@example.com", tmp_path), "To")
    ok = through(face, "address", f"{local[:-1]}@example.com", tmp_path / "ok")
    assert_sound(ok)


# -- 5: attachment file names -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a\r\nX-Evil: 1.txt",
        "a\nContent-Type: text-html.txt",
        "a\x1b[31m.txt",
        "a\x7f.txt",
        "a\tb.txt",
        "invoice\u202efdp.exe",
        "a\u2066b\u2069.txt",
    ],
)
def test_an_attachment_name_with_control_or_bidi_characters_is_refused(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_bytes(b"data")
    with pytest.raises(RejectedRow) as info:
        Attachments(base=tmp_path).resolve(name)
    assert info.value.field == "Attachment"
    for face in ("http_base64", "http_form"):  # the same check, the same reason
        out = attach_through(face, name, tmp_path / face)
        assert out.field == FILE_NAME_FIELD[face], (face, out)
        assert out.reason == info.value.reason


#: where each face names a file's name in its error
FILE_NAME_FIELD = {
    "template_attachment": "Attachment",
    "http_base64": "attachments.0.filename",
    "http_form": "attachment.0.filename",
}


@pytest.mark.parametrize("face", FILE_FACES)
@pytest.mark.parametrize("name", ["a\\b.pdf", "..\\..\\boot.ini"])
def test_an_attachment_name_with_a_backslash_is_refused(
    face: str, name: str, tmp_path: Path
) -> None:
    # a file name on this system, a path on another one's
    out = attach_through(face, name, tmp_path)
    assert out.field == FILE_NAME_FIELD[face] and "path separator" in (out.reason or ""), out


@pytest.mark.parametrize("face", ["http_base64", "http_form"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a/b.pdf", "path separator"),
        ("../../etc/passwd", "path separator"),
        ("/abs.pdf", "path separator"),
        ("..", "not a file name"),
        (" . ", "not a file name"),
        ("   ", "blank"),
        ("", "blank"),
    ],
)
def test_an_uploaded_file_name_that_is_a_path_is_refused(
    face: str, name: str, reason: str, tmp_path: Path
) -> None:
    # (a template's Attachment line is a path on purpose: resolved under its directory)
    out = attach_through(face, name, tmp_path)
    assert out.field == FILE_NAME_FIELD[face] and reason in (out.reason or ""), out


@pytest.mark.parametrize("face", ["http_base64", "http_form"])
def test_an_uploaded_file_name_is_at_most_255_bytes(face: str, tmp_path: Path) -> None:
    ok = "é" * 125 + ".pdf"  # 254 bytes in UTF-8
    assert_sound(attach_through(face, ok, tmp_path / "ok"))
    out = attach_through(face, "é" * 126 + ".pdf", tmp_path / "long")
    assert out.field == FILE_NAME_FIELD[face] and "255 bytes" in (out.reason or ""), out


@pytest.mark.parametrize(
    ("name", "param"),
    [
        ("résumé €.pdf", "filename*=utf-8''r%C3%A9sum%C3%A9%20%E2%82%AC.pdf"),
        ('a "quoted" \\ name.pdf', 'filename="a \\"quoted\\" \\\\ name.pdf"'),
        ("plain.pdf", 'filename="plain.pdf"'),
    ],
)
def test_attachment_names_are_encoded_per_rfc_2231(name: str, param: str) -> None:
    assert mime_parameter("filename", name) == param
    part = attachment_part(AttachmentRef("d" * 64, name, "application/pdf"), b"%PDF")
    head = part.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?" not in head
    msg = email.message_from_bytes(
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + part + b"\r\n--b--\r\n",
        policy=email.policy.default,
    )
    (attached,) = msg.iter_attachments()  # type: ignore[attr-defined]
    assert attached.get_filename() == name


def test_an_attachment_name_stored_before_the_check_is_made_safe() -> None:
    part = attachment_part(AttachmentRef("d" * 64, "a\r\nX-Evil: 1\u202e.txt", "text/plain"), b"x")
    head = part.partition(b"\r\n\r\n")[0]
    assert b"\r\nX-Evil" not in head and "\u202e".encode() not in head


def test_a_sent_attachment_with_a_non_ascii_name_is_sound(tmp_path: Path) -> None:
    (tmp_path / "résumé.pdf").write_bytes(b"%PDF-1.4")
    text = f"From: {SENDER}\nTo: {RECIPIENT}\nSubject: s\nAttachment: résumé.pdf\n\nb\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    tpl = Template.load(tmp_path / "t.txt")
    out = build(Renderer.build(tpl, None, None), [Row(2, {})], tmp_path)
    assert_sound(out)
    msg = email.message_from_bytes(out.wire, policy=email.policy.default)
    assert [a.get_filename() for a in msg.iter_attachments()] == ["résumé.pdf"]  # type: ignore[attr-defined]


# -- 7: headers only mailspool writes -----------------------------------------------------


@pytest.mark.parametrize(
    "name", [*sorted(PROTECTED), "ARC-Seal", "ARC-Message-Signature", "Arc-Authentication-Results"]
)
def test_a_template_cannot_set_a_protected_header(name: str) -> None:
    text = f"From: {SENDER}\nTo: {RECIPIENT}\n{name}: x\n\nb\n"
    with pytest.raises(TemplateError, match="set by mailspool"):
        Template.parse(text)
    with pytest.raises(TemplateError, match="set by mailspool"):
        parse_template("t", text, None)


def test_a_template_cannot_repeat_from_to_or_subject() -> None:
    for h in ("From", "To", "Subject", "Cc"):
        head = f"From: {SENDER}\nTo: {RECIPIENT}\nSubject: s\nCc: c@example.com\n"
        text = f"{head}{h}: x@example.com\n\nb\n"
        with pytest.raises(TemplateError, match=f"a second {h}"):
            Template.parse(text)


# -- end to end: mailspool send as a user runs it ---------------------------------------

INJECTING = {"X-Foo: bar\r\nBcc: x@evil.example\r\nX-A": "v"}


def test_send_rejects_the_rows_that_would_inject_and_sends_the_rest(
    cli: Callable[..., Result], tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    (tmp_path / "people.csv").write_text(
        "Name,Email\n"
        "Ann,ann@example.com\n"
        'Eve,"v@example.com>, <bob@evil.example"\n'
        "Zed\x1b[2J,zed@example.com\n"
        "Bob,bob@example.com\n",
        encoding="utf-8",
    )
    (tmp_path / "t.txt").write_text(
        f"From: {SENDER}\nTo: {{{{ Name }}}} <{{{{ Email }}}}>\nSubject: Hi {{{{ Name }}}}\n\nb\n",
        encoding="utf-8",
    )
    lines = [
        {"from": SENDER, "to": "cat@example.com", "text": "t"},
        {"from": SENDER, "to": "dan@example.com", "text": "t", "headers": INJECTING},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    smtp = f"smtp://127.0.0.1:{smtpd.port}"
    r = cli("send", "people.csv", "--template", "t.txt", "--smtp", smtp, "--json")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["sent"], summary["rejected"]) == (2, 2)
    with (tmp_path / summary["rejects_file"]).open() as f:
        rejects = list(csv.reader(f))
    assert [(row[0], row[1]) for row in rejects[1:]] == [("3", "To"), ("4", "To")]
    r = cli("send", "rows.jsonl", "--smtp", smtp, "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["rejected"] == 1
    got = sorted(rcpt for m in smtpd.messages for rcpt in m.recipients)
    assert got == ["ann@example.com", "bob@example.com", "cat@example.com"]
