"""The wire invariant the test servers hold every message to (mailspool.testing): the pure
check on hand-made messages and on one mailspool composes, the servers recording and
raising what breaks it, and the fixtures failing a test at teardown."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mailspool.message.compose import attachment_part, compose, wrap_mixed
from mailspool.message.render import Renderer, Template
from mailspool.models import AttachmentRef
from mailspool.testing import (
    RecordingSMTPServer,
    SMTPSink,
    assert_valid_message,
    check_message,
)
from tests.support.paths import ROOT
from tests.support.services import need

GOOD = (
    b"Date: Thu, 03 Dec 2026 09:53:12 GMT\r\n"
    b"From: News <news@example.com>\r\n"
    b"To: Ann <ann@example.com>\r\n"
    b"Cc: bob@example.com\r\n"
    b"Subject: Hi\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"\r\n"
    b"Body\r\n"
)
RCPTS = ["ann@example.com", "bob@example.com"]


def problems(data: bytes = GOOD, rcpts: list[str] = RCPTS, bcc: tuple[str, ...] = ()) -> list[str]:
    return check_message("news@example.com", rcpts, data, bcc=bcc)


def test_a_well_formed_message_passes() -> None:
    assert problems() == []
    assert problems(GOOD.replace(b"Subject: Hi", b"Subject: Hi\tthere,\r\n folded")) == []
    assert problems(GOOD.replace(b"Body", b"x" * 998)) == []
    assert_valid_message("", RCPTS, GOOD)  # the null sender of a bounce


# -- line endings and lengths ----------------------------------------------------------


def test_a_bare_lf_is_flagged() -> None:
    assert problems(GOOD.replace(b"Body\r\n", b"Bo\ndy\r\n")) == ["bare LF in line 9: b'Bo\\ndy'"]


def test_a_bare_cr_is_flagged() -> None:
    assert problems(GOOD + b"tail\rx\r\n") == ["bare CR in line 10: b'tail\\rx'"]


def test_a_bare_line_break_in_a_header_is_flagged_with_the_field_it_makes() -> None:
    found = problems(GOOD.replace(b"Subject: Hi", b"Subject: Hi\nBcc: eve@example.net"))
    assert found[0].startswith("bare LF in line 5")
    assert "a Bcc header (Bcc recipients belong in the envelope only)" in found


def test_a_999_octet_line_is_flagged() -> None:
    (found,) = problems(GOOD.replace(b"Body", b"x" * 999))
    assert found.startswith("line 9 is 999 octets long (over 998)")


def test_a_last_line_without_crlf_is_flagged() -> None:
    assert problems(GOOD.removesuffix(b"\r\n")) == ["the last line does not end with CRLF"]


def test_a_nul_is_flagged() -> None:
    assert problems(GOOD.replace(b"Body", b"Bo\0dy")) == ["NUL in line 9"]


# -- the header section ----------------------------------------------------------------


def test_a_control_character_in_a_header_is_flagged() -> None:
    (found,) = problems(GOOD.replace(b"Subject: Hi", b"Subject: Hi\x1b[31m"))
    assert found.startswith("control character b'\\x1b' in header line 5")


def test_an_8bit_octet_in_a_header_is_flagged() -> None:
    (found,) = problems(GOOD.replace(b"Subject: Hi", "Subject: Hï".encode()))
    assert found.startswith("8-bit octet in header line 5")


@pytest.mark.parametrize("line", [b"Sub ject: x", b"Subject x", b": x", b"Subj\x7fect: x"])
def test_a_header_line_that_is_not_a_field_is_flagged(line: bytes) -> None:
    found = problems(GOOD.replace(b"Subject: Hi", line))
    assert any(p.startswith("header line 5 is not a field") for p in found), found


def test_a_continuation_before_any_field_is_flagged() -> None:
    found = problems(b" folded\r\n" + GOOD)
    assert found == ["header line 1 continues no field: b' folded'"]


def test_two_message_ids_are_flagged() -> None:
    data = GOOD.replace(b"MIME-Version", b"Message-ID: <2@example.com>\r\nMIME-Version")
    assert problems(data) == ["2 Message-ID headers (exactly one expected)"]


def test_a_missing_date_is_flagged() -> None:
    assert problems(GOOD.replace(b"Date: Thu, 03 Dec 2026 09:53:12 GMT\r\n", b"")) == [
        "0 Date headers (exactly one expected)"
    ]


def test_two_to_headers_are_flagged() -> None:
    data = GOOD.replace(b"Cc: bob@example.com", b"To: bob@example.com")
    assert problems(data) == ["2 To headers (at most one expected)"]


def test_a_bcc_header_is_flagged() -> None:
    data = GOOD.replace(b"Subject", b"Bcc: bob@example.com\r\nSubject")
    assert problems(data) == ["a Bcc header (Bcc recipients belong in the envelope only)"]


def test_field_names_are_counted_case_insensitively() -> None:
    data = GOOD.replace(b"MIME-Version", b"FROM: other@example.com\r\nMIME-Version")
    assert problems(data) == ["2 From headers (exactly one expected)"]


# -- the envelope ----------------------------------------------------------------------


def test_an_envelope_recipient_not_in_to_or_cc_is_flagged_unless_declared_bcc() -> None:
    rcpts = [*RCPTS, "eve@example.net"]
    assert problems(rcpts=rcpts) == [
        "RCPT TO 'eve@example.net' is not among the To/Cc addresses"
        " ['ann@example.com', 'bob@example.com'] and not declared as a Bcc"
    ]
    assert problems(rcpts=rcpts, bcc=("Eve@Example.net",)) == []


def test_to_and_cc_are_read_by_the_stdlib_not_by_mailspool() -> None:
    # mailspool's own parser reads a display name here; the stdlib (as a mail reader
    # would) reads the unquoted address as the recipient: ann is not visibly a recipient
    data = GOOD.replace(b"To: Ann <ann@example.com>", b"To: eve@example.net <ann@example.com>")
    (found,) = problems(data)
    assert found.startswith("RCPT TO 'ann@example.com' is not among the To/Cc addresses")


def test_a_duplicate_recipient_differing_only_in_case_is_flagged() -> None:
    assert problems(rcpts=[*RCPTS, "Ann@example.com"]) == [
        "RCPT TO 'Ann@example.com' is a duplicate of 'ann@example.com'"
    ]


def test_an_invalid_or_unnormalized_envelope_address_is_flagged() -> None:
    data = GOOD.replace(b"Cc: bob@example.com", b"Cc: bob@EXAMPLE.com, x")
    found = problems(data, rcpts=["ann@example.com", "bob@EXAMPLE.com", "x"])
    assert found[0] == "RCPT TO 'bob@EXAMPLE.com' is not in normal form ('bob@example.com')"
    assert found[1].startswith("RCPT TO 'x' is not a valid address")
    found = check_message("News <news@example.com>", RCPTS, GOOD)
    assert found[0].startswith("MAIL FROM 'News <news@example.com>' is not a valid address")


def test_assert_valid_message_shows_the_problems_and_the_header_section() -> None:
    with pytest.raises(AssertionError) as exc:
        assert_valid_message("news@example.com", [*RCPTS, "eve@example.net"], GOOD)
    text = str(exc.value)
    assert "RCPT TO 'eve@example.net' is not among the To/Cc addresses" in text
    assert "b'Subject: Hi'" in text and "Body" not in text


# -- a message as mailspool composes it ------------------------------------------------

TEMPLATE = """From: Nëws Désk <news@example.com>
To: {{ Name }} <{{ Email }}>
Cc: "Smith, John" <john@example.com>, Zoë <zoe@Example.COM>
Bcc: audit@example.com
Reply-To: replies@example.com
Subject: {{ Subject }}
Content-Type: text/html
X-Campaign: spring

<p>Hello {{ Name }},</p>
<p>{{ Long }}</p>
"""


def test_a_multipart_message_composed_by_mailspool_passes() -> None:
    r = Renderer(template=Template.parse(TEMPLATE)).render(
        {
            "Name": "Ann Ünicode",
            "Email": "ann@example.com",
            "Subject": "A subject long enough to be folded " * 4 + "ünïcödé",
            "Long": "word " * 400 + "x" * 1200,  # long lines: quoted-printable
        }
    )
    message, offset = compose(r, "<0123456789abcdef@example.com>", time.time())
    ref = AttachmentRef("d" * 64, "résumé.pdf", "application/pdf")
    data = wrap_mixed(message, offset, [attachment_part(ref, bytes(range(256)) * 40)], "mix-1")
    assert b"multipart/mixed" in data and b"multipart/alternative" in data
    assert r.recipients == [
        "ann@example.com",
        "john@example.com",
        "zoe@example.com",
        "audit@example.com",
    ]
    assert check_message(r.sender[1], r.recipients, data, bcc=["audit@example.com"]) == []
    # the same message with the Bcc undeclared is caught: the check can fail on it
    assert check_message(r.sender[1], r.recipients, data) != []


# -- the servers -----------------------------------------------------------------------

BAD = GOOD.replace(b"Message-ID: <1@example.com>\r\n", b"")


def test_recording_server_records_a_violation_and_raises_it_on_exit() -> None:
    with pytest.raises(AssertionError) as exc, RecordingSMTPServer() as srv:
        with smtplib.SMTP("127.0.0.1", srv.port) as c:
            assert c.sendmail("news@example.com", RCPTS, BAD) == {}  # accepted: not raised
            c.sendmail("news@example.com", RCPTS, GOOD)
        assert len(srv.messages) == 2
        (v,) = srv.violations
        assert v.problems == ("0 Message-ID headers (exactly one expected)",)
    assert "1 message(s) received broke the wire invariant" in str(exc.value)
    assert "0 Message-ID headers" in str(exc.value) and "b'Subject: Hi'" in str(exc.value)


def test_recording_server_lets_an_overlong_line_through_to_the_check() -> None:
    # aiosmtpd alone would refuse it with a 500, which a test might take for any refusal
    srv = RecordingSMTPServer()
    long_line = GOOD.replace(b"Body", b"x" * 5000)
    with (
        pytest.raises(AssertionError, match="line 9 is 5000 octets long"),
        srv,
        smtplib.SMTP("127.0.0.1", srv.port) as c,
    ):
        c.sendmail("news@example.com", RCPTS, long_line)


def test_recording_server_checks_only_accepted_messages_and_knows_declared_bccs() -> None:
    with RecordingSMTPServer(bcc=["hidden@example.com"]) as srv:
        srv.allow_bcc("Other@Example.com")
        srv.handler.data_replies.append("554 5.6.0 no thanks")
        with smtplib.SMTP("127.0.0.1", srv.port) as c:
            with pytest.raises(smtplib.SMTPDataError):
                c.sendmail("news@example.com", RCPTS, BAD)
            rcpts = [*RCPTS, "hidden@example.com", "other@example.com"]
            c.sendmail("news@example.com", rcpts, GOOD)
        assert srv.violations == []
    assert len(srv.messages) == 1


def test_recording_server_told_why_does_not_check() -> None:
    srv = RecordingSMTPServer(unchecked="sends BAD on purpose")
    with srv, smtplib.SMTP("127.0.0.1", srv.port) as c:
        c.sendmail("news@example.com", RCPTS, BAD)
    assert srv.violations == [] and len(srv.messages) == 1


def test_smtp_sink_dump_is_read_back_as_sent_and_checked() -> None:
    need(
        SMTPSink.available(), "Postfix smtp-sink (on PATH, in /usr/sbin or at $MAILSPOOL_SMTP_SINK)"
    )
    body = b"\r\n.a line starting with a dot\r\n\r\n"
    with pytest.raises(AssertionError, match="0 Message-ID headers"), SMTPSink(dump=True) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port) as c:
            c.sendmail("news@example.com", RCPTS, GOOD + body, rcpt_options=["NOTIFY=NEVER"])
            c.sendmail("news@example.com", RCPTS[:1], BAD)
        sink.stop()
        good, bad = sink.dumped()
        assert (good.sender, good.recipients, good.data) == ("news@example.com", RCPTS, GOOD + body)
        assert (bad.recipients, bad.data) == (RCPTS[:1], BAD)
        assert sink.received() == [(RCPTS, "<1@example.com>")]
        assert [v.data for v in sink.violations()] == [BAD]


def test_smtp_sink_checks_neither_refused_nor_incomplete_messages() -> None:
    need(
        SMTPSink.available(), "Postfix smtp-sink (on PATH, in /usr/sbin or at $MAILSPOOL_SMTP_SINK)"
    )
    with SMTPSink("-f", ".", dump=True) as refusing:
        with smtplib.SMTP("127.0.0.1", refusing.port) as c, pytest.raises(smtplib.SMTPDataError):
            c.sendmail("news@example.com", RCPTS, BAD)
        refusing.stop()
        assert [m.data for m in refusing.dumped()] == [BAD]  # dumped, but refused
        assert refusing.violations() == []
    with SMTPSink(dump=True) as sink:
        with socket.create_connection(("127.0.0.1", sink.port)) as s:
            f = s.makefile("rb")
            f.readline()
            for command in (b"HELO me", b"MAIL FROM:<news@example.com>", b"RCPT TO:<a@b.org>"):
                s.sendall(command + b"\r\n")
                assert f.readline().startswith(b"250")
            s.sendall(b"DATA\r\n")
            assert f.readline().startswith(b"354")
            s.sendall(BAD[:40])  # and hang up mid-DATA
        sink.stop()
        assert sink.dumped() == []


# -- the fixtures ----------------------------------------------------------------------

INNER = """
import smtplib

import pytest

GOOD = {good!r}
BAD = {bad!r}
RCPTS = {rcpts!r}


def send(port, data):
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("news@example.com", RCPTS, data)


def test_good_to_smtpd(smtpd):
    send(smtpd.port, GOOD)


def test_bad_to_smtpd(smtpd):
    send(smtpd.port, BAD)


@pytest.mark.unchecked_mail("sends BAD on purpose")
def test_bad_to_smtpd_unchecked(smtpd):
    send(smtpd.port, BAD)


def test_good_to_smtp_sink(smtp_sink):
    send(smtp_sink().port, GOOD)


def test_bad_to_smtp_sink(smtp_sink):
    send(smtp_sink("-p").port, GOOD)
    send(smtp_sink().port, BAD)


def test_bad_to_a_refusing_smtp_sink(smtp_sink):
    with pytest.raises(smtplib.SMTPDataError):
        send(smtp_sink("-r", ".").port, BAD)
"""


def test_the_fixtures_fail_a_test_at_teardown_for_a_broken_message(tmp_path: Path) -> None:
    need(
        SMTPSink.available(), "Postfix smtp-sink (on PATH, in /usr/sbin or at $MAILSPOOL_SMTP_SINK)"
    )
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(INNER.format(good=GOOD, bad=BAD, rcpts=RCPTS)))
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", "pyproject.toml",
         "-p", "no:cacheprovider", "-q", "-rA", str(inner)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outcomes: dict[str, set[str]] = {}
    for line in p.stdout.splitlines():
        if line.startswith(("PASSED", "ERROR", "FAILED")) and "::" in line:
            name = line.split("::")[1].split(" ")[0]
            outcomes.setdefault(name, set()).add(line.split(" ")[0])
    # a test whose messages broke the invariant passes, then errs at its teardown
    assert outcomes == {
        "test_good_to_smtpd": {"PASSED"},
        "test_bad_to_smtpd": {"PASSED", "ERROR"},
        "test_bad_to_smtpd_unchecked": {"PASSED"},
        "test_good_to_smtp_sink": {"PASSED"},
        "test_bad_to_smtp_sink": {"PASSED", "ERROR"},
        "test_bad_to_a_refusing_smtp_sink": {"PASSED"},
    }, p.stdout + p.stderr
    # each teardown error reports its one message (the summary lines may repeat the text,
    # as wide as the terminal allows)
    errors = p.stdout.split("= PASSES =")[0]
    assert errors.count("1 message(s) received broke the wire invariant") == 2, p.stdout
