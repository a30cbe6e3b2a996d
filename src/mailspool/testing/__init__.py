"""Test helpers shipped with the package: a recording SMTP server (aiosmtpd) that runs in
a background thread on a free loopback port, with optional STARTTLS and AUTH; a wrapper
around Postfix's ``smtp-sink`` for fault injection; a scripted line server.

The recording server and the sink check every complete, accepted message against a wire
invariant (``check_message``): every line ends CRLF and is at most 998 octets, no NUL,
header lines are well-formed fields without control characters, From, Date and
Message-ID appear exactly once and Bcc never, and the envelope recipients are valid,
unique and named in To/Cc as the stdlib's ``email`` package reads them. A message that
breaks it is recorded as a ``Violation`` (never raised in the server's thread); leaving
the server's ``with`` block, or ``assert_clean()``, raises AssertionError with the
problems and the message's header section. Recipients that may be Bccs are declared with
``bcc=``; a test that sends odd mail on purpose opts out with ``unchecked="the reason"``.

Needs the ``dev`` extra (aiosmtpd, trustme).
"""

from mailspool.testing.invariant import (
    MAX_LINE,
    Received,
    Violation,
    assert_valid_message,
    check_message,
    violation_report,
)
from mailspool.testing.servers import LineServer, RecordingSMTPServer, free_port, wait_listening
from mailspool.testing.sink import SMTPSink, postfix_tool, smtp_sink_path, smtp_source_path

__all__ = [
    "MAX_LINE",
    "LineServer",
    "Received",
    "RecordingSMTPServer",
    "SMTPSink",
    "Violation",
    "assert_valid_message",
    "check_message",
    "free_port",
    "postfix_tool",
    "smtp_sink_path",
    "smtp_source_path",
    "violation_report",
    "wait_listening",
]
