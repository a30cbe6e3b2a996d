"""Hand-written delivery status notifications (RFC 3464) in the shapes Postfix and Exim
send: failed and delayed recipients, the original Message-ID, successes left out."""

from __future__ import annotations

from mailspool.inbound import Kind, parse_report

ORIGINAL = (
    "From: news@sender.example\r\n"
    "To: list@sender.example\r\n"
    "Subject: Spring news\r\n"
    "Message-ID: <job-42.7@mailspool.example>\r\n"
    "Date: Mon, 3 Mar 2025 10:00:00 +0000\r\n"
)


def postfix(returned_type: str = "text/rfc822-headers") -> bytes:
    return (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)\r\n"
        "To: bounces@sender.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        '\tboundary="B1"\r\n'
        "\r\n"
        "--B1\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.sender.example\r\n"
        "X-Postfix-Queue-ID: 3F1A2B\r\n"
        "Arrival-Date: Mon,  3 Mar 2025 10:00:01 +0000 (UTC)\r\n"
        "\r\n"
        "Final-Recipient: rfc822; Gone.User@Example.COM\r\n"
        "Original-Recipient: rfc822;Gone.User@Example.COM\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.example.com\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <gone.user@example.com>: Recipient address\r\n"
        "    rejected: User unknown in virtual mailbox table\r\n"
        "\r\n"
        "Final-Recipient: rfc822; full@example.org\r\n"
        "Action: delayed\r\n"
        "Status: 4.2.2\r\n"
        "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n"
        "\r\n"
        "--B1\r\n"
        f"Content-Description: Undelivered Message Headers\r\n"
        f"Content-Type: {returned_type}\r\n"
        "\r\n"
        f"{ORIGINAL}"
        "\r\n"
        "--B1--\r\n"
    ).encode()


def test_a_postfix_dsn_gives_a_hard_and_a_soft_failure_and_the_message_id() -> None:
    report = parse_report(postfix())
    assert report.kind is Kind.DSN
    assert report.message_id == "<job-42.7@mailspool.example>"
    hard, soft = report.recipients
    assert hard.address == "gone.user@example.com"
    assert (hard.status, hard.permanent, hard.action) == ("5.1.1", True, "failed")
    assert hard.diagnostic is not None
    assert hard.diagnostic.startswith("550 5.1.1 <gone.user@example.com>: Recipient address")
    assert "smtp;" not in hard.diagnostic
    assert soft.address == "full@example.org"
    assert (soft.status, soft.permanent, soft.action) == ("4.2.2", False, "delayed")
    assert report.permanent == ["gone.user@example.com"]
    assert report.temporary == ["full@example.org"]


def test_the_original_may_come_back_whole_as_message_rfc822() -> None:
    report = parse_report(postfix("message/rfc822"))
    assert report.kind is Kind.DSN
    assert report.message_id == "<job-42.7@mailspool.example>"
    assert [b.address for b in report.recipients] == ["gone.user@example.com", "full@example.org"]


def dsn(fields: str, *, returned: bool = False) -> bytes:
    tail = (
        ("--B2\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL + "\r\nHello\r\n")
        if returned
        else ""
    )
    return (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\r\n"
        "To: bounces@sender.example\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B2"\r\n'
        "\r\n"
        "--B2\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\r\n"
        "--B2\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"{fields}\r\n"
        f"{tail}"
        "--B2--\r\n"
    ).encode()


def test_an_exim_dsn_without_status_takes_it_from_the_diagnostic() -> None:
    fields = (
        "Action: failed\r\n"
        "Final-Recipient: rfc822;nobody@example.net\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: no such user\r\n"
    )
    report = parse_report(dsn(fields, returned=True))
    assert report.kind is Kind.DSN
    [bounced] = report.recipients
    assert (bounced.address, bounced.status, bounced.permanent) == (
        "nobody@example.net",
        "5.1.1",
        True,
    )
    assert report.message_id == "<job-42.7@mailspool.example>"


def test_a_basic_550_without_any_status_is_permanent() -> None:
    fields = "Final-Recipient: rfc822; x@example.net\r\nDiagnostic-Code: smtp; 550 no\r\n"
    [bounced] = parse_report(dsn(fields)).recipients
    assert (bounced.status, bounced.permanent) == ("5.0.0", True)


def test_failed_without_status_or_diagnostic_is_permanent() -> None:
    fields = "Final-Recipient: rfc822; x@example.net\r\nAction: failed\r\n"
    [bounced] = parse_report(dsn(fields)).recipients
    assert (bounced.status, bounced.permanent) == (None, True)


def test_delivered_relayed_and_expanded_recipients_did_not_bounce() -> None:
    fields = "\r\n".join(
        f"Final-Recipient: rfc822; {who}@example.net\r\nAction: {action}\r\nStatus: 2.0.0\r\n"
        for who, action in (("a", "delivered"), ("b", "relayed"), ("c", "expanded"))
    )
    report = parse_report(dsn(fields))
    assert report.kind is Kind.DSN
    assert report.recipients == []


def test_a_failed_recipient_among_delivered_ones_is_the_only_one() -> None:
    fields = (
        "Final-Recipient: rfc822; ok@example.net\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
        "Final-Recipient: rfc822; bad@example.net\r\nAction: failed\r\nStatus: 5.2.1\r\n"
    )
    report = parse_report(dsn(fields))
    assert [(b.address, b.permanent) for b in report.recipients] == [("bad@example.net", True)]


def test_a_recipient_that_is_no_address_is_dropped() -> None:
    fields = (
        "Final-Recipient: rfc822; not an address\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: x400; /C=US/O=Example/\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; <Real@Example.net>\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )
    report = parse_report(dsn(fields))
    assert [b.address for b in report.recipients] == ["real@example.net"]


def test_a_delay_with_a_5xx_status_is_still_only_a_delay() -> None:
    fields = "Final-Recipient: rfc822; x@example.net\r\nAction: delayed\r\nStatus: 5.0.0\r\n"
    [bounced] = parse_report(dsn(fields)).recipients
    assert not bounced.permanent
