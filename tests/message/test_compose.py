"""Message bytes: header encoding, body transfer encoding, MIME structure."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from mailspool.message.compose import (
    MAX_LINE,
    attachment_part,
    compose,
    encode_body,
    encode_header,
    wrap_mixed,
)
from mailspool.message.render import Rendered, Renderer, Template
from mailspool.models import AttachmentRef

MESSAGE_ID = "<0123456789abcdef0123456789abcdef@example.com>"


def build(**fields: object) -> Rendered:
    base: dict[str, object] = {
        "sender": ("", "news@example.com"),
        "to": [("", "ann@example.com")],
        "subject": "s",
        "text": "hello\n",
    }
    base.update(fields)
    return Rendered(**base)  # type: ignore[arg-type]


def message(r: Rendered) -> tuple[bytes, EmailMessage]:
    data, _ = compose(r, MESSAGE_ID, 1_700_000_000)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return data, msg


def lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    return data.split(b"\r\n")


def body_text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# -- headers ------------------------------------------------------------------------


def test_plain_ascii_message_shape() -> None:
    data, msg = message(build())
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [h.split(b":", 1)[0] for h in head]
    assert names == [
        b"Date",
        b"From",
        b"To",
        b"Subject",
        b"Message-ID",
        b"MIME-Version",
        b"Content-Type",
        b"Content-Transfer-Encoding",
    ]
    assert msg["Message-ID"] == MESSAGE_ID
    assert b"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n" in b"\r\n" + data
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert data.endswith(b"\r\n\r\nhello\r\n")


def test_non_ascii_subject_and_display_names_are_rfc2047_encoded() -> None:
    r = build(
        sender=("Zoë Müller", "news@example.com"),
        to=[("Jürgen 日本", "j@example.com"), ("Ann", "ann@example.com")],
        cc=[("Ça", "cc@example.com")],
        reply_to=[("Ré", "re@example.com")],
        subject="Grüße — ünïcödé ✓",
        headers=[("X-Note", "naïve")],
    )
    data, msg = message(r)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    assert msg["Subject"] == "Grüße — ünïcödé ✓"
    assert msg["From"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"].addresses[0].addr_spec == "news@example.com"
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Jürgen 日本", "j@example.com"),
        ("Ann", "ann@example.com"),
    ]
    assert msg["Cc"].addresses[0].display_name == "Ça"
    assert msg["Reply-To"].addresses[0].display_name == "Ré"
    assert msg["X-Note"] == "naïve"


def test_display_name_with_specials_is_quoted() -> None:
    _, msg = message(build(to=[("Smith, John", "js@example.com")]))
    (addr,) = msg["To"].addresses
    assert (addr.display_name, addr.addr_spec) == ("Smith, John", "js@example.com")


def test_long_headers_are_folded_under_the_line_limit() -> None:
    subject = " ".join(["word"] * 400)
    unbroken = "y" * 1500
    r = build(subject=subject, headers=[("X-Unbroken", unbroken)])
    data, msg = message(r)
    assert max(len(line) for line in lines(data)) <= MAX_LINE
    assert msg["Subject"] == subject
    assert msg["X-Unbroken"] == unbroken


@pytest.mark.parametrize("value", ["short", "a" * 70, "x y" * 60, "é" * 100, "z" * 2000])
def test_encode_header_keeps_every_line_short(value: str) -> None:
    encoded = encode_header("X-Test", value)
    assert encoded.startswith("X-Test: ")
    assert encoded.isascii()
    assert all(len(line) <= MAX_LINE for line in encoded.split("\r\n"))
    parsed = email.message_from_string(encoded + "\r\n\r\n", policy=email.policy.default)
    assert parsed["X-Test"] == value


# -- bodies -------------------------------------------------------------------------


def test_ascii_body_is_7bit_with_crlf() -> None:
    cte, body = encode_body("line one\nline two\r\nline three")
    assert cte == "7bit"
    assert body == "line one\r\nline two\r\nline three\r\n"


def test_non_ascii_body_is_quoted_printable_and_decodes_back() -> None:
    text = "Grüße, Zoë!\nÇa va? 日本語 ✓\n.\nFrom here\n" + "é" * 300 + "\n"
    data, msg = message(build(text=text))
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert data.isascii()
    assert max(len(line) for line in lines(data)) <= 76
    assert body_text(msg) == text


def test_long_ascii_line_is_encoded_and_decodes_back() -> None:
    long_line = "a" * 1500
    text = f"short\n{long_line}\nend\n"
    data, msg = message(build(text=text))
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(len(line) for line in lines(data)) <= MAX_LINE
    assert body_text(msg) == text


def test_line_of_exactly_998_characters_stays_7bit() -> None:
    cte, body = encode_body("b" * MAX_LINE)
    assert cte == "7bit"
    assert body == "b" * MAX_LINE + "\r\n"
    cte, _ = encode_body("b" * (MAX_LINE + 1))
    assert cte == "quoted-printable"


def test_alternative_parts_are_encoded_independently() -> None:
    r = build(text="plain ascii\n", html="<p>Grüße " + "x" * 1200 + "</p>")
    data, msg = message(r)
    assert max(len(line) for line in lines(data)) <= MAX_LINE
    text_part, html_part = msg.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "7bit"
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert isinstance(html_part, EmailMessage)
    assert body_text(html_part) == "<p>Grüße " + "x" * 1200 + "</p>\n"


def test_rendered_message_round_trips_through_the_parser() -> None:
    tpl = Template.parse(
        "From: Zoë <news@example.com>\nTo: {{ Name }} <{{ Email }}>\n"
        "Subject: Hallo {{ Name }}\n\nLiebe(r) {{ Name }},\n{{ Long }}\n"
    )
    row = {"Name": "Jürgen", "Email": "j@example.com", "Long": "ü" * 1200}
    data, msg = message(Renderer.build(tpl, None, None).render(row))
    assert max(len(line) for line in lines(data)) <= MAX_LINE
    assert msg["Subject"] == "Hallo Jürgen"
    assert msg["To"].addresses[0].display_name == "Jürgen"
    assert body_text(msg) == "Liebe(r) Jürgen,\n" + "ü" * 1200 + "\n"


# -- attachments ----------------------------------------------------------------------


def test_attachment_wrapped_as_multipart_mixed_decodes_back() -> None:
    payload = bytes(range(256)) * 40
    ref = AttachmentRef("d" * 64, "résumé.pdf", "application/pdf")
    data, offset = compose(build(html="<p>hi</p>"), MESSAGE_ID, 1_700_000_000)
    wrapped = wrap_mixed(data, offset, [attachment_part(ref, payload)], "mix-0123456789abcdef")
    lines(wrapped)
    msg = email.message_from_bytes(wrapped, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Message-ID"] == MESSAGE_ID
    assert msg.get_content_type() == "multipart/mixed"
    body, attachment = msg.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "résumé.pdf"
    assert attachment.get_content() == payload
    assert max(len(line) for line in wrapped.split(b"\r\n")) <= MAX_LINE


def test_body_containing_the_boundary_cannot_break_out_of_its_part() -> None:
    forged = (
        "before\n--alt-0123456789abcdef\nContent-Type: text/html\n\n<b>forged</b>\n"
        "--alt-0123456789abcdef--\n"
    )
    _, msg = message(build(text=forged, html="<p>real</p>"))
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert isinstance(parts[0], EmailMessage) and isinstance(parts[1], EmailMessage)
    assert body_text(parts[0]) == forged
    assert body_text(parts[1]) == "<p>real</p>\n"


def test_mixed_boundary_avoids_the_message_content() -> None:
    forged = "x\n--mix-0123456789abcdef\nContent-Type: text/plain\n\nforged\n"
    data, offset = compose(build(text=forged), MESSAGE_ID, 0)
    ref = AttachmentRef("d" * 64, "a.bin", "application/octet-stream")
    wrapped = wrap_mixed(data, offset, [attachment_part(ref, b"payload")], "mix-0123456789abcdef")
    msg = email.message_from_bytes(wrapped, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body, attachment = msg.iter_parts()
    assert isinstance(body, EmailMessage) and isinstance(attachment, EmailMessage)
    assert body_text(body) == forged
    assert attachment.get_content() == b"payload"
