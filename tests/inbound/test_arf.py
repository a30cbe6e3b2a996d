"""Feedback reports (RFC 5965) as in the RFC's own example (its appendix B.2): the
complaining recipient, the feedback type, the original Message-ID."""

from __future__ import annotations

from mailspool.inbound import Kind, parse_report

FIELDS = (
    "Feedback-Type: abuse\r\n"
    "User-Agent: SomeGenerator/1.0\r\n"
    "Version: 1\r\n"
    "Original-Mail-From: <somespammer@example.net>\r\n"
    "{rcpt}"
    "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
    "Reporting-MTA: dns; mail.example.com\r\n"
    "Source-IP: 192.0.2.1\r\n"
    "Authentication-Results: mail.example.com;\r\n"
    "               spf=fail smtp.mail=somespammer@example.com\r\n"
    "Reported-Domain: example.net\r\n"
    "Reported-Uri: http://example.net/earn_money.html\r\n"
    "Reported-Uri: mailto:user@example.com\r\n"
)


def report(rcpt: str, to: str, returned_type: str = "message/rfc822") -> bytes:
    return (
        "From: <abusedesk@example.com>\r\n"
        "Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n"
        "Subject: FW: Earn money\r\n"
        "To: <abuse@example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n"
        '     boundary="part1_13d.2e68ed54_boundary"\r\n'
        "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        'Content-Type: text/plain; charset="US-ASCII"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "This is an email abuse report for an email message received from IP\r\n"
        "192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n"
        "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n" + FIELDS.format(rcpt=rcpt) + "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        f"Content-Type: {returned_type}\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        "From: <somespammer@example.net>\r\n"
        "Received: from mailserver.example.net (mailserver.example.net\r\n"
        "        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\r\n"
        "        Thu, 08 Mar 2005 14:00:00 -0400\r\n"
        f"To: {to}\r\n"
        "Subject: Earn money\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-type: text/plain\r\n"
        "Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\r\n"
        "Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n"
        "\r\n"
        "Spam Spam Spam\r\n"
        "--part1_13d.2e68ed54_boundary--\r\n"
    ).encode()


def test_an_abuse_report_names_the_recipient_in_original_rcpt_to() -> None:
    parsed = parse_report(report("Original-Rcpt-To: <User@Example.com>\r\n", "<Undisclosed>"))
    assert parsed.kind is Kind.ARF
    assert parsed.feedback_type == "abuse"
    assert [b.address for b in parsed.recipients] == ["user@example.com"]
    assert parsed.recipients[0].permanent
    assert parsed.message_id == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"


def test_removal_recipient_counts_as_well() -> None:
    parsed = parse_report(report("Removal-Recipient: user@example.com\r\n", "<Undisclosed>"))
    assert [b.address for b in parsed.recipients] == ["user@example.com"]


def test_without_original_rcpt_to_the_recipient_is_the_original_to() -> None:
    parsed = parse_report(report("", "Some One <Some.One@Example.org>"))
    assert parsed.kind is Kind.ARF
    assert [b.address for b in parsed.recipients] == ["some.one@example.org"]
    assert parsed.message_id == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"


def test_the_original_may_come_back_as_headers_only() -> None:
    parsed = parse_report(report("", "<Some.One@Example.org>", "text/rfc822-headers"))
    assert [b.address for b in parsed.recipients] == ["some.one@example.org"]
    assert parsed.message_id == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"


def test_an_original_to_that_is_no_address_gives_no_recipient() -> None:
    parsed = parse_report(report("", "<Undisclosed Recipients>"))
    assert parsed.kind is Kind.ARF
    assert parsed.recipients == []


def test_a_not_spam_report_is_no_complaint() -> None:
    data = report("Original-Rcpt-To: user@example.com\r\n", "x").replace(
        b"Feedback-Type: abuse", b"Feedback-Type: not-spam"
    )
    parsed = parse_report(data)
    assert parsed.feedback_type == "not-spam"
    assert [(b.address, b.permanent) for b in parsed.recipients] == [("user@example.com", False)]
