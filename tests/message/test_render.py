"""Templates and rendering (README, "The input"; docs/security.md): one test per rule."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import RejectedRow, TemplateError
from mailspool.message.compose import compose
from mailspool.message.render import Rendered, Renderer, Template, template_context
from tests.support.cli import TEMPLATE

ROW = {"Name": "Ann", "Email": "ann@example.com"}


def renderer(
    text: str | None,
    *,
    html: str | None = None,
    default_from: str | None = None,
    default_subject: str | None = None,
) -> Renderer:
    tpl = Template.parse(text, html_text=html) if text is not None else None
    return Renderer.build(tpl, default_from, default_subject)


def render(text: str | None, values: dict[str, Any], **kw: Any) -> Rendered:
    return renderer(text, **kw).render(values)


def rejected(text: str | None, values: dict[str, Any], **kw: Any) -> RejectedRow:
    with pytest.raises(RejectedRow) as info:
        render(text, values, **kw)
    return info.value


def parse(r: Rendered) -> EmailMessage:
    data, _ = compose(r, "<0123456789abcdef0123456789abcdef@example.com>", 1_700_000_000)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# -- header block and body ----------------------------------------------------------


def test_header_block_and_body() -> None:
    r = render(TEMPLATE, ROW)
    assert r.sender == ("News", "news@example.com")
    assert r.to == [("", "ann@example.com")]
    assert r.subject == "Hi Ann, your update"
    assert r.text == "Hi Ann, this is your update.\n"
    assert r.html is None
    msg = parse(r)
    assert msg["From"] == "News <news@example.com>"
    assert msg["To"] == "ann@example.com"
    assert msg["Subject"] == "Hi Ann, your update"
    assert msg.get_content_type() == "text/plain"
    assert text_of(msg) == "Hi Ann, this is your update.\n"


def test_extra_headers_pass_through_and_folded_lines_join() -> None:
    text = (
        "From: news@example.com\n"
        "To: {{ Email }}\n"
        "Subject: a long\n"
        "  folded subject\n"
        "X-Campaign: spring-{{ Name }}\n"
        "X-Empty: {{ '' }}\n"
        "\n"
        "Body\n"
    )
    r = render(text, ROW)
    assert r.subject == "a long folded subject"
    assert r.headers == [("X-Campaign", "spring-Ann")]  # an empty header is left out
    assert parse(r)["X-Campaign"] == "spring-Ann"


def test_crlf_template_is_read_like_lf() -> None:
    r = render(TEMPLATE.replace("\n", "\r\n"), ROW)
    assert r.subject == "Hi Ann, your update"
    assert r.text == "Hi Ann, this is your update.\n"


def test_template_without_header_block_is_all_body() -> None:
    tpl = Template.parse("Dear {{ Name }}:\nno headers here\n")
    # "Dear Ann:" is no header line (a space in the name), so it stays in the body
    assert tpl.headers == []
    assert tpl.body is not None
    assert tpl.body.render(Name="Ann") == "Dear Ann:\nno headers here\n"


@pytest.mark.parametrize("end", ["", "\n", "\n\n"])
def test_header_block_without_body(end: str) -> None:
    r = render("From: a@example.com\nTo: {{ Email }}\nSubject: s" + end, ROW)
    assert r.subject == "s"
    assert r.text == ""


def test_separator_line_with_invisible_spaces_still_ends_the_headers() -> None:
    r = render(TEMPLATE.replace("update\n\n", "update\n  \t\n"), ROW)
    assert r.subject == "Hi Ann, your update"
    assert r.text == "Hi Ann, this is your update.\n"


def test_blank_lines_in_the_body_are_kept() -> None:
    r = render(TEMPLATE + "\n\nP.S. {{ Name }}\n", ROW)
    assert r.text == "Hi Ann, this is your update.\n\n\nP.S. Ann\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("From: a@example.com\nTo: {{ Email\n\nbody\n", "^t: line 2: unexpected end"),
        ("From: a@example.com\nthis is not a header\n\nbody\n", "^t: line 2: not a 'Name: value'"),
        ("From: a@example.com\nMessage-ID: <x@y>\n\nbody\n", "^t: line 2: .*set by mailspool"),
        ("From: a@example.com\nX: y\n\nline 4\n{% if %}\n", "^t: line 5: "),
    ],
    ids=["syntax-in-header", "malformed-header", "reserved-header", "syntax-in-body"],
)
def test_template_errors_are_reported_at_load(text: str, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        Template.parse(text, name="t")


def test_syntax_error_in_the_html_template_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "t.html").write_text("<p>\n{{ Name </p>\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"^t\.html: line 2: "):
        Template.load(tmp_path / "t.txt", tmp_path / "t.html")


def test_template_load_reads_files(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("\ufeff" + TEMPLATE, encoding="utf-8")
    tpl = Template.load(tmp_path / "t.txt")
    r = Renderer.build(tpl, None, None).render(ROW)
    assert r.sender == ("News", "news@example.com")
    with pytest.raises(TemplateError, match="cannot read"):
        Template.load(tmp_path / "missing.txt")


# -- variables ----------------------------------------------------------------------


def test_missing_variable_in_body_rejects_the_row_naming_field_and_variable() -> None:
    err = rejected(TEMPLATE.replace("your update.", "{{ Plan }}."), ROW)
    assert err.field == "body"
    assert "'Plan'" in err.reason and "undefined" in err.reason


def test_missing_variable_in_a_header_names_that_header() -> None:
    err = rejected(TEMPLATE.replace("Subject: Hi", "Subject: {{ Title }}"), ROW)
    assert err.field == "Subject"
    assert "'Title'" in err.reason


def test_missing_variable_is_not_an_empty_string_even_in_a_condition() -> None:
    text = "From: a@example.com\nTo: {{ Email }}\n\n{% if VIP %}vip{% endif %}\n"
    err = rejected(text, ROW)
    assert err.field == "body" and "'VIP'" in err.reason


def test_lowercase_alias_of_column_names() -> None:
    text = "From: a@example.com\nTo: {{ email }}\nSubject: {{ name }} {{ Name }}\n\nb\n"
    r = render(text, ROW)
    assert r.to == [("", "ann@example.com")]
    assert r.subject == "Ann Ann"


def test_lowercase_alias_never_shadows_a_real_column() -> None:
    ctx = template_context({"Email": "upper@example.com", "email": "lower@example.com"})
    assert ctx["email"] == "lower@example.com"
    assert ctx["Email"] == "upper@example.com"


def test_no_alias_when_two_columns_would_share_it() -> None:
    ctx = template_context({"EMAIL": "a@example.com", "Email": "b@example.com"})
    assert "email" not in ctx
    text = "From: a@example.com\nTo: {{ email }}\n\nb\n"
    err = rejected(text, {"EMAIL": "a@example.com", "Email": "b@example.com"})
    assert err.field == "To" and "'email'" in err.reason


def test_columns_that_are_not_identifiers_are_reachable_through_row() -> None:
    text = "From: a@example.com\nTo: {{ row['E-mail address'] }}\n\nb\n"
    r = render(text, {"E-mail address": "x@example.com"})
    assert r.to == [("", "x@example.com")]


# -- escaping -----------------------------------------------------------------------

NASTY = {"Name": "<b>Tom & Jerry</b>", "Email": "tom@example.com"}


def test_html_body_is_autoescaped() -> None:
    text = (
        "From: a@example.com\nTo: {{ Email }}\nContent-Type: text/html\n"
        "Subject: {{ Name }}\n\n<p>Hi {{ Name }}</p>\n"
    )
    r = render(text, NASTY)
    assert r.html == "<p>Hi &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>\n"


def test_text_body_and_headers_are_not_escaped() -> None:
    text = "From: a@example.com\nTo: {{ Email }}\nSubject: {{ Name }}\n\nHi {{ Name }}\n"
    r = render(text, NASTY)
    assert r.text == "Hi <b>Tom & Jerry</b>\n"
    assert r.subject == "<b>Tom & Jerry</b>"
    assert parse(r)["Subject"] == "<b>Tom & Jerry</b>"


def test_separate_html_template_is_escaped_and_text_template_is_not() -> None:
    r = render(
        "From: a@example.com\nTo: {{ Email }}\nSubject: {{ Name }}\n\nHi {{ Name }}\n",
        NASTY,
        html="<p>Hi {{ Name }}</p>",
    )
    assert r.text == "Hi <b>Tom & Jerry</b>\n"
    assert r.html == "<p>Hi &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert r.subject == "<b>Tom & Jerry</b>"


# -- --from and --subject -----------------------------------------------------------


def test_from_and_subject_defaults_are_jinja_strings() -> None:
    text = "To: {{ Email }}\n\nHello\n"
    r = render(
        text,
        ROW,
        default_from="{{ Name }} at News <news@example.com>",
        default_subject="News for {{ name }}",
    )
    assert r.sender == ("Ann at News", "news@example.com")
    assert r.subject == "News for Ann"


def test_template_headers_win_over_defaults() -> None:
    r = render(TEMPLATE, ROW, default_from="other@example.com", default_subject="Other")
    assert r.sender == ("News", "news@example.com")
    assert r.subject == "Hi Ann, your update"


def test_default_with_a_missing_variable_rejects_naming_the_field() -> None:
    err = rejected(
        "To: {{ Email }}\n\nb\n", ROW, default_from="x@example.com", default_subject="{{ Nope }}"
    )
    assert err.field == "Subject" and "'Nope'" in err.reason


def test_default_with_a_syntax_error_fails_at_start() -> None:
    with pytest.raises(TemplateError, match="--from/--subject"):
        renderer("To: {{ Email }}\n\nb\n", default_subject="{{ oops")


def test_no_sender_anywhere_is_rejected() -> None:
    err = rejected("To: {{ Email }}\nSubject: s\n\nb\n", ROW)
    assert err.field == "From" and "--from" in err.reason


# -- HTML -> multipart/alternative ------------------------------------------------------

HTML_TEMPLATE = (
    "From: News <news@example.com>\n"
    "To: {{ Email }}\n"
    "Subject: Hi {{ Name }}\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<html><head><title>x</title><style>p {color: red}</style></head><body>"
    '<h1>Hello {{ Name }}</h1><p>Read <a href="https://example.com/n">the news</a>.</p>'
    "<ul><li>one</li><li>two</li></ul></body></html>\n"
)


def assert_alternative(msg: EmailMessage) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert isinstance(parts[0], EmailMessage) and isinstance(parts[1], EmailMessage)
    return text_of(parts[0]), text_of(parts[1])


def test_content_type_html_becomes_alternative_with_generated_text() -> None:
    r = render(HTML_TEMPLATE, ROW)
    msg = parse(r)
    assert "Content-Type" not in dict(r.headers)
    text, html = assert_alternative(msg)
    assert "<h1>Hello Ann</h1>" in html
    assert "<" not in text
    assert "Hello Ann" in text
    assert "the news (https://example.com/n)" in text
    assert "- one\n- two" in text
    assert "color" not in text and "x\n" not in text.split("Hello")[0]


def test_separate_html_template_becomes_alternative_with_the_text_template(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "t.html").write_text("<p>Hi <b>{{ Name }}</b></p>\n", encoding="utf-8")
    tpl = Template.load(tmp_path / "t.txt", tmp_path / "t.html")
    msg = parse(Renderer.build(tpl, None, None).render(ROW))
    text, html = assert_alternative(msg)
    assert text == "Hi Ann, this is your update.\n"
    assert html == "<p>Hi <b>Ann</b></p>\n"


def test_html_template_without_a_text_body_gets_a_generated_text_part() -> None:
    r = render("From: a@example.com\nTo: {{ Email }}\n\n", ROW, html="<p>Only <i>html</i></p>")
    text, html = assert_alternative(parse(r))
    assert text == "Only html\n"
    assert html == "<p>Only <i>html</i></p>\n"


def test_plain_template_is_a_single_text_part() -> None:
    msg = parse(render(TEMPLATE, ROW))
    assert not msg.is_multipart()
    assert msg.get_content_type() == "text/plain"


# -- attachments (rendering only; resolution is tested in test_validation) -------------


def test_attachment_lines_are_rendered_and_not_headers() -> None:
    text = (
        "From: a@example.com\nTo: {{ Email }}\n"
        "Attachment: invoices/{{ Name }}.pdf\nAttachment: terms.pdf\nAttachment: {{ '' }}\n\nb\n"
    )
    r = render(text, ROW)
    assert r.attachments == ["invoices/Ann.pdf", "terms.pdf"]
    assert all(name.lower() != "attachment" for name, _ in r.headers)
    assert "Attachment" not in parse(r)


# -- direct-column mode ----------------------------------------------------------------


def test_direct_mode_uses_the_columns() -> None:
    row = {
        "to": "Ann <ann@example.com>",
        "subject": "Direct {{ not rendered }}",
        "body": "Plain body\n",
        "from": "News <news@example.com>",
        "cc": "cc@example.com",
        "bcc": "bcc@example.com",
        "reply_to": "replies@example.com",
        "html": "<p>Html body</p>",
        "other": "ignored",
    }
    r = render(None, row)
    assert r.sender == ("News", "news@example.com")
    assert r.to == [("Ann", "ann@example.com")]
    assert r.cc == [("", "cc@example.com")]
    assert r.bcc == [("", "bcc@example.com")]
    assert r.reply_to == [("", "replies@example.com")]
    assert r.subject == "Direct {{ not rendered }}"  # column values are data, not templates
    assert r.recipients == ["ann@example.com", "cc@example.com", "bcc@example.com"]
    msg = parse(r)
    assert msg["Cc"] == "cc@example.com"
    assert msg["Reply-To"] == "replies@example.com"
    assert "Bcc" not in msg  # Bcc is only in the envelope
    text, html = assert_alternative(msg)
    assert text == "Plain body\n"
    assert html == "<p>Html body</p>\n"


def test_direct_mode_column_names_are_case_insensitive_and_lists_are_joined() -> None:
    row = {"To": ["a@example.com", "b@example.com"], "Subject": "S", "Text": "t"}
    r = render(None, row, default_from="news@example.com")
    assert r.to == [("", "a@example.com"), ("", "b@example.com")]
    assert r.subject == "S"
    assert r.text == "t"


def test_direct_mode_from_falls_back_to_the_default() -> None:
    row = {"to": "a@example.com", "from": "", "subject": "", "body": "b"}
    r = render(None, row, default_from="{{ to }} list <list@example.com>", default_subject="Hi")
    assert r.sender == ("a@example.com list", "list@example.com")
    assert r.subject == "Hi"


def test_direct_mode_without_a_recipient_is_rejected() -> None:
    err = rejected(None, {"Name": "x", "Email": "a@example.com"}, default_from="n@example.com")
    assert err.field == "To" and "no recipient" in err.reason


def test_direct_mode_extra_headers_must_be_x_headers() -> None:
    base = {"to": "a@example.com", "from": "n@example.com", "body": "b"}
    r = render(None, {**base, "headers": {"X-Tag": "t1"}})
    assert r.headers == [("X-Tag", "t1")]
    err = rejected(None, {**base, "headers": {"Sender": "evil@example.com"}})
    assert err.field == "headers.Sender"
