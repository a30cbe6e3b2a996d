"""Returned mail for the tests that show it: hand-made bounces (DSN) and complaints
(ARF) about a message that was sent, fed to ``mailspool.inbound.handle`` on the queue
the message's job is in."""

from __future__ import annotations

import asyncio
import time

from mailspool.inbound import Handled, SoftBouncePolicy, handle, parse_report
from mailspool.queue import make_queue

#: a remote server's text trying to reach the terminal: escape sequences (clear the
#: screen, set the window title) and a bell
HOSTILE = "\x1b[2J\x1b]0;owned\x07 mailbox unknown"


def dsn(rcpt: str, message_id: str, *, status: str = "5.1.1", text: str = "no such user") -> bytes:
    action = "failed" if status.startswith("5") else "delayed"
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: bounces@bounce.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nIt could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} {text}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@example.com\r\nTo: {rcpt}\r\nSubject: News\r\nMessage-ID: {message_id}\r\n"
        "\r\n--B--\r\n"
    ).encode()


def arf(rcpt: str, message_id: str) -> bytes:
    return (
        "From: fbl@isp.example\r\nTo: fbl@example.com\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: fbl/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: {rcpt}\r\n"
        "\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@example.com\r\nTo: {rcpt}\r\nMessage-ID: {message_id}\r\n\r\n"
        "--F--\r\n"
    ).encode()


def feed(queue_url: str, *messages: bytes) -> list[Handled]:
    """Handle each returned message on the queue at ``queue_url`` (found by Message-ID)."""

    async def go() -> list[Handled]:
        out: list[Handled] = []
        async with make_queue(queue_url) as q:
            for data in messages:
                report = parse_report(data)
                out += await handle(
                    report, data, store=q, return_path=None, now=time.time(),
                    policy=SoftBouncePolicy(),
                )  # fmt: skip
        return out

    return asyncio.run(go())


def job_of(queue_url: str, message_id: str) -> str:
    """The id of the job that sent ``message_id``."""

    async def go() -> str | None:
        async with make_queue(queue_url) as q:
            return await q.returns.find_by_message_id(message_id)

    found = asyncio.run(go())
    assert found is not None, message_id
    return found
