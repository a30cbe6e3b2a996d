"""Validation of a rendered row: addresses, header injection, attachments."""

from __future__ import annotations

import ctypes
import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import RejectedRow
from mailspool.intake.builder import Attachments
from mailspool.message.addresses import parse_addresses
from mailspool.message.compose import compose
from mailspool.message.render import Rendered, Renderer, Template
from tests.support.cli import TEMPLATE

ROW = {"Name": "Ann", "Email": "ann@example.com"}
ADDRESS_HEADERS = ["To", "Cc", "Bcc", "From", "Reply-To"]
BAD_ADDRESSES = [
    "not-an-address",
    "two@@example.com",
    "ann@-bad-.example.com",
    "ann@localhost",
    "ann example.com",
    "zoë@example.com",  # no SMTPUTF8
]


def render(text: str | None, values: dict[str, Any], **kw: Any) -> Rendered:
    tpl = Template.parse(text) if text is not None else None
    return Renderer.build(tpl, kw.get("default_from"), kw.get("default_subject")).render(values)


def rejected(text: str | None, values: dict[str, Any], **kw: Any) -> RejectedRow:
    with pytest.raises(RejectedRow) as info:
        render(text, values, **kw)
    return info.value


def template_with(header: str, value: str) -> str:
    headers = {"From": "news@example.com", "To": "ann@example.com", header: value}
    return "".join(f"{k}: {v}\n" for k, v in headers.items()) + "Subject: s\n\nbody\n"


# -- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize("header", ADDRESS_HEADERS)
@pytest.mark.parametrize("bad", BAD_ADDRESSES)
def test_invalid_address_is_rejected_naming_the_field(header: str, bad: str) -> None:
    err = rejected(template_with(header, "{{ Addr }}"), {"Addr": bad})
    assert err.field == header
    assert bad in err.reason or "cannot parse" in err.reason


@pytest.mark.parametrize(
    ("column", "header"),
    [("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("from", "From"), ("reply_to", "Reply-To")],
)
def test_invalid_address_in_direct_mode_names_the_field(column: str, header: str) -> None:
    row = {"to": "ann@example.com", "from": "news@example.com", "body": "b", column: "nope"}
    err = rejected(None, row)
    assert err.field == header


@pytest.mark.parametrize("header", ADDRESS_HEADERS)
def test_valid_address_is_accepted_in_every_field(header: str) -> None:
    r = render(template_with(header, "Bob Example <Bob@Example.COM>"), {})
    got = {"To": r.to, "Cc": r.cc, "Bcc": r.bcc, "From": [r.sender], "Reply-To": r.reply_to}
    assert got[header] == [("Bob Example", "Bob@example.com")]  # domain lowercased


def test_addresses_are_normalized() -> None:
    assert parse_addresses("Zoë <zoe@Exämple.COM>", "To") == [("Zoë", "zoe@xn--exmple-cua.com")]
    assert parse_addresses(" a@example.com ; b@example.com, ", "To") == [
        ("", "a@example.com"),
        ("", "b@example.com"),
    ]
    assert parse_addresses('"Smith, John" <js@example.com>', "To") == [
        ("Smith, John", "js@example.com")
    ]
    assert parse_addresses("", "To") == []
    assert parse_addresses("a@example.com (Ann A.)", "To") == [("Ann A.", "a@example.com")]
    assert parse_addresses("a@example.com (Smith, J), b@example.com", "To") == [
        ("Smith, J", "a@example.com"),
        ("", "b@example.com"),
    ]
    assert parse_addresses('"Smith, J" Jr <j@example.com>', "To") == [
        ("Smith, J Jr", "j@example.com")
    ]
    assert parse_addresses('"q\\"x" <a@example.com>', "To") == [('q"x', "a@example.com")]


def test_display_name_that_looks_like_an_address_adds_no_recipient() -> None:
    """email.utils alone reads ``boss@x <me@y>`` as two addresses."""
    r = render(
        TEMPLATE.replace("To: {{ Email }}", "To: {{ Name }} <{{ Email }}>"),
        {
            "Name": "boss@example.com",
            "Email": "ann@example.com",
        },
    )
    assert r.recipients == ["ann@example.com"]
    assert r.to == [("boss@example.com", "ann@example.com")]


DEMO_TO = TEMPLATE.replace("To: {{ Email }}", "To: {{ Name }} <{{ Email }}>")


@pytest.mark.parametrize(
    "name",
    ["smith, john", "eve <eve@evil.example>, bob", 'say "hi"; bye', "back\\slash (x)", "j. r. r."],
)
def test_variable_display_name_is_data_not_address_syntax(name: str) -> None:
    """A comma in a name neither splits the list nor adds a recipient."""
    r = render(DEMO_TO, {"Name": name, "Email": "ann@example.com"})
    assert r.recipients == ["ann@example.com"]
    assert r.to == [(name, "ann@example.com")]
    data, _ = compose(r, "<x@example.com>", 0)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "ann@example.com")


def test_display_name_expression_with_a_filter_is_quoted_too() -> None:
    text = DEMO_TO.replace("{{ Name }}", "{{- Name | title -}}")
    r = render(text, {"Name": "smith, john", "Email": "ann@example.com"})
    assert r.to == [("Smith, John", "ann@example.com")]


def test_variable_inside_a_quoted_display_name_cannot_close_the_quotes() -> None:
    text = 'From: news@example.com\nTo: "{{ Name }}" <{{ Email }}>, ok@example.com\n\nb\n'
    r = render(text, {"Name": 'x" <eve@evil.example>, "y', "Email": "ann@example.com"})
    assert r.recipients == ["ann@example.com", "ok@example.com"]
    assert r.to[0] == ('x" <eve@evil.example>, "y', "ann@example.com")


def test_an_address_slot_holds_one_address_and_a_list_must_be_marked() -> None:
    text = "From: news@example.com\nTo: {{ Email }}\nCc: {{ Team }}\n\nb\n"
    team = "a@example.com, B <b@example.com>"
    err = rejected(text, {"Email": "Ann <ann@example.com>", "Team": team})
    assert err.field == "Cc" and "one address" in err.reason
    listed = text.replace("{{ Team }}", "{{ Team | address_list }}")
    r = render(listed, {"Email": "Ann <ann@example.com>", "Team": team})
    assert r.to == [("Ann", "ann@example.com")]
    assert r.cc == [("", "a@example.com"), ("B", "b@example.com")]
    r = render(listed, {"Email": "ann@example.com", "Team": ["a@example.com", "b@example.com"]})
    assert r.recipients == ["ann@example.com", "a@example.com", "b@example.com"]
    err = rejected(listed, {"Email": "ann@example.com", "Team": ["a@example.com, x@evil.example"]})
    assert err.field == "Cc" and "one address" in err.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ann@example.com junk", "invalid address 'ann@example.com junk'"),
        ("John Smith", "invalid address 'John Smith'"),
        ("<a@example.com> <b@example.com>", "cannot parse"),
        ("x <a@example.com> trailing", "cannot parse"),
        ("Name <a@example.com", "cannot parse"),
        ("Name <>", "cannot parse"),
    ],
)
def test_ambiguous_address_text_is_rejected_not_guessed(value: str, reason: str) -> None:
    """email.utils would read these as ``ann@example.comjunk``, ``John``, two addresses..."""
    with pytest.raises(RejectedRow) as info:
        parse_addresses(value, "To")
    assert info.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Bee <bad>", "invalid address 'bad': An email address must have an @-sign."),
        ("not-an-address", "invalid address 'not-an-address': An email address must have an"),
        ("a@example.com, (just a comment)", "invalid address '(just a comment)'"),
    ],
)
def test_rejection_reason_says_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(RejectedRow) as info:
        parse_addresses(value, "Cc")
    assert info.value.field == "Cc"
    assert info.value.reason.startswith(reason)


def test_only_one_sender() -> None:
    err = rejected(template_with("From", "a@example.com, b@example.com"), {})
    assert err.field == "From" and "exactly one" in err.reason


def test_no_recipient_is_rejected() -> None:
    err = rejected("From: news@example.com\nTo: {{ Email }}\n\nb\n", {"Email": ""})
    assert err.field == "To" and "no recipient" in err.reason


def test_too_many_recipients_is_rejected() -> None:
    many = ", ".join(f"r{i}@example.com" for i in range(101))
    err = rejected(template_with("Cc", many), {})
    assert err.field == "Cc" and "more than 100" in err.reason


def test_bcc_is_in_the_envelope_only() -> None:
    r = render(template_with("Bcc", "hidden@example.com"), {})
    assert "hidden@example.com" in r.recipients
    data, _ = compose(r, "<x@example.com>", 0)
    assert b"hidden" not in data


def test_recipients_are_deduplicated_within_a_message() -> None:
    r = render(template_with("Cc", "ann@EXAMPLE.com"), {})
    assert r.recipients == ["ann@example.com"]


# -- header injection ---------------------------------------------------------------------

INJECTIONS = [
    "x\nBcc: evil@example.com",
    "x\r\nBcc: evil@example.com",
    "x\rBcc: evil@example.com",
    "x\x00Bcc: evil@example.com",
]


@pytest.mark.parametrize("payload", INJECTIONS, ids=["lf", "crlf", "cr", "nul"])
@pytest.mark.parametrize("header", ["Subject", "To", "From", "X-Custom"])
def test_line_break_or_nul_in_a_rendered_header_is_rejected(header: str, payload: str) -> None:
    text = "From: news@example.com\nTo: ann@example.com\nSubject: s\n".replace(
        f"{header}: ", f"{header}: {{{{ Name }}}} "
    )
    if header == "X-Custom":
        text += "X-Custom: {{ Name }}\n"
    err = rejected(text + "\nbody\n", {"Name": payload})
    assert err.field == header
    assert "line break or NUL" in err.reason


@pytest.mark.parametrize("payload", INJECTIONS, ids=["lf", "crlf", "cr", "nul"])
def test_header_injection_through_the_defaults(payload: str) -> None:
    err = rejected(
        "To: ann@example.com\n\nbody\n",
        {"Name": payload},
        default_from="news@example.com",
        default_subject="Hi {{ Name }}",
    )
    assert err.field == "Subject"


@pytest.mark.parametrize("column", ["to", "subject", "from"])
def test_header_injection_in_direct_mode(column: str) -> None:
    row = {"to": "ann@example.com", "from": "news@example.com", "subject": "s", "body": "b"}
    row[column] += "\nBcc: evil@example.com"
    err = rejected(None, row)
    assert err.field.lower() == column
    assert "line break" in err.reason


def test_header_injection_in_an_attachment_line() -> None:
    text = "From: news@example.com\nTo: ann@example.com\nAttachment: {{ Name }}\n\nb\n"
    err = rejected(text, {"Name": "a.pdf\nBcc: evil@example.com"})
    assert err.field == "Attachment"


def test_line_breaks_in_the_body_are_fine() -> None:
    r = render(TEMPLATE.replace("this is", "{{ Extra }}"), {**ROW, "Extra": "a\nBcc: b\r\n"})
    msg = email.message_from_bytes(compose(r, "<x@example.com>", 0)[0], policy=email.policy.default)
    assert msg["Bcc"] is None
    assert "Bcc: b" in msg.get_content()


def test_nul_in_the_body_is_rejected() -> None:
    err = rejected(TEMPLATE.replace("this is", "{{ Extra }}"), {**ROW, "Extra": "a\x00b"})
    assert err.field == "body" and "NUL" in err.reason


# -- attachments: resolution under one base directory -----------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    (d / "sub").mkdir(parents=True)
    (d / "terms.pdf").write_bytes(b"%PDF terms")
    (d / "sub" / "invoice.txt").write_bytes(b"invoice")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    return d


def attachments(base: Path) -> Attachments:
    return Attachments(base=base)


def test_attachment_inside_the_base_is_resolved(base: Path) -> None:
    a = attachments(base)
    ref = a.resolve("terms.pdf")
    assert ref.filename == "terms.pdf"
    assert ref.content_type == "application/pdf"
    sub = a.resolve("sub/../sub/invoice.txt")
    assert (sub.filename, sub.content_type) == ("invoice.txt", "text/plain")
    assert a.resolve(str(base / "terms.pdf")) == ref  # absolute, but inside the base


@pytest.mark.parametrize("name", ["../secret.txt", "sub/../../secret.txt", "{abs}"])
def test_attachment_outside_the_base_is_rejected(base: Path, name: str) -> None:
    name = name.format(abs=base.parent / "secret.txt")
    with pytest.raises(RejectedRow) as info:
        attachments(base).resolve(name)
    assert info.value.field == "Attachment"
    assert "outside the attachment directory" in info.value.reason


def test_absolute_system_path_is_rejected(base: Path) -> None:
    with pytest.raises(RejectedRow, match="outside"):
        attachments(base).resolve("/etc/passwd")


def test_symlink_leading_outside_the_base_is_rejected(base: Path) -> None:
    (base / "link.txt").symlink_to(base.parent / "secret.txt")
    with pytest.raises(RejectedRow, match="outside"):
        attachments(base).resolve("link.txt")


def test_missing_attachment_is_rejected_with_a_clear_reason(base: Path) -> None:
    with pytest.raises(RejectedRow) as info:
        attachments(base).resolve("nope.pdf")
    assert info.value.field == "Attachment"
    assert "cannot read 'nope.pdf'" in info.value.reason
    assert "No such file" in info.value.reason


def test_directory_as_attachment_is_rejected(base: Path) -> None:
    with pytest.raises(RejectedRow, match="cannot read 'sub'"):
        attachments(base).resolve("sub")


_UNREADABLE = """
import sys
from pathlib import Path
from mailspool.errors import RejectedRow
from mailspool.intake.builder import Attachments
try:
    Attachments(base=Path(sys.argv[1])).resolve("locked.pdf")
except RejectedRow as exc:
    print(exc.field, "|", exc.reason)
else:
    print("resolved")
"""


def _without_read_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set (prctl PR_CAPBSET_DROP), so that root, too, is refused a mode-0 file."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_attachment_is_rejected(tmp_path: Path) -> None:
    """A file the producer may not read. Root reads any file, so the check runs in a child
    process without the capabilities that let it."""
    base = tmp_path / "attachments"
    base.mkdir()
    locked = base / "locked.pdf"
    locked.write_bytes(b"x")
    locked.chmod(0)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _UNREADABLE, str(base)], capture_output=True, text=True,
            timeout=60, preexec_fn=_without_read_override if os.geteuid() == 0 else None,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Attachment | cannot read 'locked.pdf'"), out.stdout
        assert "Permission denied" in out.stdout
    finally:
        locked.chmod(0o644)
