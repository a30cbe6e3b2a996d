"""The IMAP side of inbound ingest (mailspool.inbound.imap): the mailbox URL and where
its password comes from, and one pass against a private Dovecot: a message is moved only
once it is applied, and one that fails stays for the next pass (with MOVE, and with COPY
+ \\Deleted + EXPUNGE)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailspool.errors import ConfigError, QueueError
from mailspool.inbound.imap import ImapError, ingest_pass, parse_imap_url
from tests.support.imap import Dovecot


def test_the_url_gives_the_mailbox_the_port_and_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILSPOOL_IMAP_PASSWORD", "s3cret")
    s = parse_imap_url("imaps://bounces@mail.example.com/Bounces%20In")
    assert (s.host, s.port, s.mailbox, s.implicit_tls) == ("mail.example.com", 993,
                                                           "Bounces In", True)  # fmt: skip
    assert s.url == "imaps://bounces@mail.example.com:993/Bounces%20In"
    assert "s3cret" not in repr(s)
    assert parse_imap_url("imap://u@h").port == 143
    assert parse_imap_url("imap://u@h").mailbox == "INBOX"
    monkeypatch.delenv("MAILSPOOL_IMAP_PASSWORD")
    (tmp_path / "pw").write_text("from-a-file\n")
    monkeypatch.setenv("MAILSPOOL_IMAP_PASSWORD_FILE", str(tmp_path / "pw"))
    assert parse_imap_url("imaps://u@h/INBOX").password == "from-a-file"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("pop3://u@h/INBOX", "imaps:// or imap://"),
        ("imaps://h/INBOX", "names no user"),
        ("imaps://u@h/INBOX?starttls=off", "unknown IMAP URL option"),
        ("imaps://u@h/INBOX?cafile=/no/such/ca.pem", "does not exist"),
        ("imaps://u@h/IN*", "without * or %"),
    ],
)
def test_a_bad_url_is_refused(url: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSPOOL_IMAP_PASSWORD", "x")
    with pytest.raises(ConfigError, match=says.replace("*", r"\*")):
        parse_imap_url(url)


def test_no_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSPOOL_IMAP_PASSWORD", raising=False)
    monkeypatch.delenv("MAILSPOOL_IMAP_PASSWORD_FILE", raising=False)
    with pytest.raises(ConfigError, match="MAILSPOOL_IMAP_PASSWORD"):
        parse_imap_url("imaps://u@h/INBOX")


@pytest.mark.parametrize("use_move", [True, False], ids=["move", "copy-expunge"])
def test_a_message_that_fails_stays_and_the_next_pass_takes_it(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, use_move: bool
) -> None:
    monkeypatch.setenv("MAILSPOOL_IMAP_PASSWORD", dovecot.password)
    settings = parse_imap_url(dovecot.url())
    dovecot.append(*(f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in range(3)))
    applied: list[int] = []

    async def queue_down_at_2(uid: int, data: bytes) -> None:
        if uid == 2:
            raise QueueError("the queue is down")
        applied.append(uid)

    with pytest.raises(QueueError):
        asyncio.run(ingest_pass(settings, "done", queue_down_at_2, use_move=use_move))
    assert applied == [1]
    assert (dovecot.count("INBOX"), dovecot.count("done")) == (2, 1)

    async def apply(uid: int, data: bytes) -> None:
        applied.append(uid)

    assert asyncio.run(ingest_pass(settings, "done", apply, use_move=use_move)) == 2
    assert applied == [1, 2, 3]
    assert (dovecot.count("INBOX"), dovecot.count("done")) == (0, 3)
    assert [m.split(b"\r\n")[-2] for m in dovecot.messages("done")] == [
        b"message 0", b"message 1", b"message 2",
    ]  # fmt: skip


def test_a_certificate_from_another_ca_is_refused(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSPOOL_IMAP_PASSWORD", dovecot.password)
    settings = parse_imap_url(dovecot.url().split("?")[0])  # the system's CAs only

    async def apply(uid: int, data: bytes) -> None:
        raise AssertionError("nothing is read")

    with pytest.raises(ImapError, match="certificate not accepted"):
        asyncio.run(ingest_pass(settings, "done", apply))
