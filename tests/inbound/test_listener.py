"""The SMTP listener for returned mail (inbound/listener.py), in-process on a port the
OS picks, with aiosmtplib as the sending MTA: a bounce to a VERP address suppresses,
other recipients are refused (no relay), oversize mail is refused, STARTTLS works, and a
message the store cannot take is deferred (451) and taken when sent again."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from mailspool.inbound import Action, SoftBouncePolicy
from mailspool.inbound.listener import Listener, Outcome, ReturnedMail
from mailspool.message.unsubscribe import Secrets
from mailspool.message.verp import ReturnPath
from mailspool.models import Job, job_id
from mailspool.queue import Queue, SQLiteQueue
from mailspool.queue.suppression import Reason
from tests.support.jobs import make_job
from tests.support.returned import dsn

RETURN_PATH = ReturnPath("bounces@bounce.example.com", Secrets(["s" * 40]))
UNSUBSCRIBE = "unsubscribe@news.example"

Start = Callable[..., Any]


def job(to: str) -> Job:
    jid = job_id("spring", to)
    return make_job(1, campaign="spring", to=to, id=jid, message_id=f"<{jid}@news.example>")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    yield q
    await q.close()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(store, **options)``: a listener on 127.0.0.1, port 0, its outcomes
    in ``listener.outcomes``; stopped at teardown."""
    started: list[Listener] = []

    async def make(store: Queue, *, tls: ssl.SSLContext | None = None, **kw: Any) -> Listener:
        outcomes: list[Outcome] = []
        handler = ReturnedMail(
            store=store, return_path=RETURN_PATH, unsubscribe_to=[UNSUBSCRIBE],
            policy=SoftBouncePolicy(), on_outcome=outcomes.append, **kw,
        )  # fmt: skip
        listener = Listener(handler, host="127.0.0.1", port=0, tls=tls, hostname="mx.test")
        listener.outcomes = outcomes  # type: ignore[attr-defined]
        await listener.start()
        started.append(listener)
        return listener

    yield make
    for listener in started:
        await listener.stop(5)


async def send(
    listener: Listener, data: bytes, rcpt: str, tls: ssl.SSLContext | None = None
) -> str:
    """Deliver ``data`` from the null sender (as a bounce comes) to ``rcpt``, with
    STARTTLS when ``tls`` (the client's context) is given: the final reply's text."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=listener.port, start_tls=tls is not None, tls_context=tls
    )
    async with client:
        _, reply = await client.sendmail("", [rcpt], data)
    return reply


async def suppressed(q: Queue) -> dict[str, Reason]:
    return {e.address: e.reason for e in await q.suppressions.entries()}


async def test_a_bounce_to_a_verp_address_suppresses_and_names_its_job(
    queue: Queue, start: Start
) -> None:
    j = job("gone@example.com")
    await queue.enqueue([j])
    listener = await start(queue)
    # no Message-ID in the returned headers: only the VERP address can name the job
    data = dsn("gone@example.com", "<not-ours@elsewhere.example>")
    assert await send(listener, data, RETURN_PATH.address(j.id)) == "2.0.0 OK"
    assert await suppressed(queue) == {"gone@example.com": Reason.BOUNCED}
    latest = await queue.returns.latest(j.id)
    assert latest is not None and latest.status == "5.1.1"
    [o] = listener.outcomes  # type: ignore[attr-defined]
    assert o.envelope_to == RETURN_PATH.address(j.id) and o.error is None
    assert [(h.job, h.action) for h in o.handled] == [(j.id, Action.SUPPRESSED)]


async def test_only_the_return_path_and_the_unsubscribe_address_are_taken(
    queue: Queue, start: Start
) -> None:
    listener = await start(queue)
    forged = "bounces+" + "a" * 40 + "@bounce.example.com"  # the form, but no secret signed it
    for rcpt in ("someone@example.com", "other@bounce.example.com", "bounces@example.com",
                 "bounces+short@bounce.example.com"):  # fmt: skip
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send(listener, b"Subject: x\r\n\r\nrelay me\r\n", rcpt)
        [error] = refused.value.recipients
        assert error.code == 550 and error.message.startswith("5.1.1"), error
    for rcpt in ("Bounces@Bounce.Example.com", forged, UNSUBSCRIBE):
        data = f"From: ann@example.org\r\n\r\nstop, {rcpt}\r\n".encode()
        assert await send(listener, data, rcpt) == "2.0.0 OK"
    # nothing names a job: each kept unmatched; the unsubscribe request suppresses its sender
    assert await queue.returns.unmatched_count() == 2
    assert await suppressed(queue) == {"ann@example.org": Reason.UNSUBSCRIBED}


async def test_a_message_over_the_size_limit_is_refused_with_552(
    queue: Queue, start: Start
) -> None:
    listener = await start(queue, max_size=2000)
    big = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 40
    # declared with SIZE (aiosmtplib declares it when offered): refused at MAIL FROM
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as declared:
        await send(listener, big, RETURN_PATH.base)
    assert declared.value.code == 552
    # not declared: refused at the end of DATA
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False)
    async with client:
        await client.mail("")
        await client.rcpt(RETURN_PATH.base)
        with pytest.raises(aiosmtplib.SMTPDataError) as sent:
            await client.data(big)
    assert sent.value.code == 552
    assert listener.outcomes == []  # type: ignore[attr-defined]
    assert await queue.returns.unmatched_count() == 0


async def test_starttls_with_the_given_certificate(
    queue: Queue, start: Start, ca: trustme.CA, server_tls: ssl.SSLContext
) -> None:
    j = job("gone@example.com")
    await queue.enqueue([j])
    listener = await start(queue, tls=server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    data = dsn("gone@example.com", j.message_id)
    assert await send(listener, data, RETURN_PATH.base, tls=client_tls) == "2.0.0 OK"
    [o] = listener.outcomes  # type: ignore[attr-defined]
    assert o.tls
    assert await suppressed(queue) == {"gone@example.com": Reason.BOUNCED}


async def test_a_message_the_store_cannot_take_is_deferred_and_taken_when_sent_again(
    tmp_path: Path, start: Start
) -> None:
    j = job("gone@example.com")
    data = dsn("gone@example.com", j.message_id)
    down = SQLiteQueue(tmp_path / "q.db")
    await down.open()
    await down.enqueue([j])
    listener = await start(down)
    await down.close()  # the store goes away under the listener
    with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
        await send(listener, data, RETURN_PATH.address(j.id))
    assert deferred.value.code == 451 and deferred.value.message.startswith("4.3.0")
    [o] = listener.outcomes  # type: ignore[attr-defined]
    assert o.report is None and o.error

    # the sender keeps it and retries, once the store is back
    up = SQLiteQueue(tmp_path / "q.db")
    await up.open()
    try:
        assert await suppressed(up) == {}
        again = await start(up)
        assert await send(again, data, RETURN_PATH.address(j.id)) == "2.0.0 OK"
        assert await suppressed(up) == {"gone@example.com": Reason.BOUNCED}
    finally:
        await up.close()
