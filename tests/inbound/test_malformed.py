"""Malformed and hostile input: every one gives a clear Report, none raises."""

from __future__ import annotations

from mailspool.inbound import DEFAULT_MAX_BYTES, Kind, is_unsubscribe_request, parse_report

HEAD = (
    b"From: MAILER-DAEMON@mx.example.net\r\n"
    b"To: bounces@sender.example\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
)
STATUS = (
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
    b"Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
)


def test_a_truncated_multipart_gives_what_it_holds() -> None:
    report = parse_report(HEAD + STATUS[: STATUS.index(b"Status")])
    assert report.kind is Kind.DSN
    assert [(b.address, b.permanent) for b in report.recipients] == [("gone@example.com", True)]


def test_a_multipart_without_a_boundary_is_unknown() -> None:
    data = HEAD.replace(b'; boundary="B"', b"") + STATUS + b"--B--\r\n"
    report = parse_report(data)
    assert report.kind is Kind.UNKNOWN
    assert report.recipients == []
    assert report.reason


def test_bytes_that_are_not_utf8_are_read_as_far_as_they_go() -> None:
    data = (
        HEAD
        + STATUS.replace(b"Action: failed", b"Action: failed \xff\xfe\xe9")
        + (
            b"--B\r\nContent-Type: text/rfc822-headers; charset=no-such-charset\r\n\r\n"
            b"Subject: caf\xe9\r\nMessage-ID: <a\xe9@x>\r\n"
            b"Message-ID: <m1@example.com>\r\n\r\n--B--\r\n"
        )
    )
    report = parse_report(data)
    assert report.kind is Kind.DSN
    assert [b.address for b in report.recipients] == ["gone@example.com"]
    # a Message-ID is printable ASCII: the undecodable one is passed over
    assert report.message_id == "<m1@example.com>"


def test_binary_garbage_is_unknown() -> None:
    garbage = bytes(range(256)) * 40 + b"\x00\r\n\r\n\xff" * 100
    report = parse_report(garbage)
    assert report.kind is Kind.UNKNOWN
    assert report.recipients == []
    assert report.reason == "not a recognised bounce or report"


def test_empty_input_is_unknown() -> None:
    assert parse_report(b"").kind is Kind.UNKNOWN


def test_a_report_over_the_limit_is_refused_unread() -> None:
    data = HEAD + STATUS + b"x" * (50 * 1024 * 1024)
    assert len(data) > DEFAULT_MAX_BYTES
    report = parse_report(data, envelope_to="Bounces@Sender.example")
    assert report.kind is Kind.UNKNOWN
    assert report.recipients == []
    assert report.reason is not None
    assert report.reason.startswith("too large:")
    assert "not parsed" in report.reason
    assert report.envelope_to == "bounces@sender.example"


def test_the_limit_is_the_callers() -> None:
    data = HEAD + STATUS + b"--B--\r\n"
    assert parse_report(data, max_bytes=len(data)).kind is Kind.DSN
    assert parse_report(data, max_bytes=len(data) - 1).kind is Kind.UNKNOWN


def test_a_header_line_of_a_megabyte_is_survived() -> None:
    huge = b"X-Junk: " + b"a" * (1024 * 1024) + b"\r\n"
    report = parse_report(huge + HEAD + STATUS + b"--B--\r\n")
    assert report.kind is Kind.DSN
    assert [b.address for b in report.recipients] == ["gone@example.com"]
    status = STATUS.replace(b"Status: 5.1.1", b"Status: 5.1.1 " + b"9." * 500_000)
    assert parse_report(HEAD + status).recipients[0].status == "5.1.1"


def test_deeply_nested_messages_are_not_followed_to_the_bottom() -> None:
    depth = 2000
    data = b"".join(b"Content-Type: message/rfc822\r\n\r\n" for _ in range(depth)) + (
        b"Message-ID: <deep@example.com>\r\n\r\nbody\r\n"
    )
    report = parse_report(HEAD.replace(b"multipart/report", b"message/rfc822") + data)
    assert report.kind is Kind.UNKNOWN
    assert report.recipients == []


def test_nested_multiparts_bomb_is_unknown() -> None:
    parts = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(3000)
    )
    report = parse_report(b"From: x@example.com\r\n" + parts)
    assert report.kind is Kind.UNKNOWN
    assert report.recipients == []


def test_a_message_to_an_unsubscribe_address_is_a_request_from_its_sender() -> None:
    data = b"From: Reader <Reader@Example.org>\r\nTo: unsub@sender.example\r\n\r\nplease\r\n"
    report = parse_report(
        data, envelope_to="UNSUB@sender.example", unsubscribe_to=["unsub@sender.example"]
    )
    assert report.kind is Kind.UNSUBSCRIBE
    assert [b.address for b in report.recipients] == ["reader@example.org"]
    assert is_unsubscribe_request("unsub@sender.example", ["Unsub@Sender.Example"])
    assert not is_unsubscribe_request("other@sender.example", ["unsub@sender.example"])
    assert not is_unsubscribe_request(None, ["unsub@sender.example"])
    other = parse_report(data, envelope_to="bounces@sender.example", unsubscribe_to=["u@x.org"])
    assert other.kind is Kind.UNKNOWN


def test_an_unsubscribe_request_without_a_valid_sender_names_nobody() -> None:
    report = parse_report(
        b"From: nobody\r\n\r\nunsubscribe\r\n",
        envelope_to="unsub@sender.example",
        unsubscribe_to=["unsub@sender.example"],
    )
    assert report.kind is Kind.UNSUBSCRIBE
    assert report.recipients == []
    assert report.reason == "no valid From address"
