"""What a returned message does (inbound/handle.py), on every queue backend: reports
parsed from real bytes, matched to jobs queued here by their VERP return path or their
Message-ID, recorded once, suppressing or counting, or kept unmatched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailspool.inbound import Action, Bounced, Handled, SoftBouncePolicy, handle, parse_report
from mailspool.message.unsubscribe import Secrets
from mailspool.message.verp import ReturnPath
from mailspool.models import Job, State, job_id
from mailspool.queue import Queue
from mailspool.queue.returns import ReturnCounts
from mailspool.queue.suppression import Reason
from tests.support.jobs import make_job

T0 = 1_700_000_000.0
DAY = 86_400.0
BOUNCES = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = ReturnPath("bounces@bounce.example.com", Secrets(["s" * 40]))


def job(campaign: str, to: str, key: str | None = None) -> Job:
    jid = job_id(campaign, key or to)
    return make_job(1, campaign=campaign, to=to, id=jid, message_id=f"<{jid}@news.example>")


def dsn(rcpt: str, message_id: str | None, *, status: str = "5.1.1", note: str = "") -> bytes:
    action = "failed" if status.startswith("5") else "delayed"
    headers = f"Message-ID: {message_id}\r\n" if message_id else ""
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: bounces@bounce.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nIt could not be delivered." + note + "\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox says no\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@news.example\r\nTo: {rcpt}\r\nSubject: News\r\n{headers}\r\n"
        "--B--\r\n"
    ).encode()


def arf(rcpt: str, message_id: str, feedback_type: str = "abuse") -> bytes:
    original = f"Original-Rcpt-To: {rcpt}\r\n" if rcpt else ""
    return (
        "From: fbl@isp.example\r\nTo: fbl@news.example\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: fbl/1.0\r\nVersion: 1\r\n{original}"
        "\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@news.example\r\nTo: redacted\r\nMessage-ID: {message_id}\r\n\r\n"
        "--F--\r\n"
    ).encode()


async def run(
    q: Queue,
    data: bytes,
    *,
    envelope_to: str | None = None,
    now: float = T0,
    policy: SoftBouncePolicy | None = None,
) -> list[Handled]:
    report = parse_report(data, envelope_to=envelope_to)
    return await handle(
        report, data, store=q, return_path=RETURN_PATH, now=now,
        policy=policy or SoftBouncePolicy(),
    )  # fmt: skip


async def suppressed(q: Queue, address: str) -> list[tuple[str | None, Reason, str]]:
    entries = await q.suppressions.entries()
    return [(e.list_name, e.reason, e.source) for e in entries if e.address == address]


async def test_a_hard_bounce_by_message_id_is_recorded_and_suppresses(queue: Queue) -> None:
    j = job("spring", "gone@example.com")
    await queue.enqueue([j])
    data = dsn("Gone@Example.com", j.message_id)
    out = await run(queue, data)
    assert out == [Handled("gone@example.com", j.id, Action.SUPPRESSED, recorded=True)]
    assert await suppressed(queue, "gone@example.com") == [(None, Reason.BOUNCED, "bounce:spring")]
    latest = await queue.returns.latest(j.id)
    assert (
        latest is not None and latest.status == "5.1.1" and "mailbox says no" in (latest.diagnostic)
    )
    assert await queue.returns.counts("spring") == ReturnCounts(bounced=1)
    stored = await queue.get(j.id)
    assert stored is not None and stored.state is State.QUEUED  # untouched
    # the same message again: recorded once, the address stays suppressed
    again = await run(queue, data, now=T0 + 60)
    assert again == [Handled("gone@example.com", j.id, Action.SUPPRESSED, recorded=False)]
    assert await queue.returns.counts("spring") == ReturnCounts(bounced=1)


async def test_a_bounce_to_the_verp_address_names_its_job(queue: Queue) -> None:
    j = job("spring", "gone@example.com")
    await queue.enqueue([j])
    to = RETURN_PATH.address(j.id).upper()  # a server may change its case
    out = await run(queue, dsn("gone@example.com", None), envelope_to=to)
    assert out == [Handled("gone@example.com", j.id, Action.SUPPRESSED, recorded=True)]


async def test_the_signed_token_wins_over_the_message_id_of_another_campaign(
    queue: Queue,
) -> None:
    mine, other = job("spring", "ann@example.com"), job("autumn", "ann@example.com")
    await queue.enqueue([mine, other])
    data = dsn("ann@example.com", other.message_id)
    out = await run(queue, data, envelope_to=RETURN_PATH.address(mine.id))
    assert [h.job for h in out] == [mine.id]
    assert await queue.returns.counts("spring") == ReturnCounts(bounced=1)
    assert await queue.returns.counts("autumn") == ReturnCounts()


async def test_a_forged_token_is_no_token(queue: Queue) -> None:
    j = job("spring", "ann@example.com")
    await queue.enqueue([j])
    real = RETURN_PATH.address(j.id)
    local, _, domain = real.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    # with the Message-ID it is still found, by that
    out = await run(queue, dsn("ann@example.com", j.message_id), envelope_to=forged)
    assert [h.job for h in out] == [j.id]
    # without, it names nothing: kept, counted, never dropped
    data = dsn("ann@example.com", None, note=" forged")
    out = await run(queue, data, envelope_to=forged)
    assert [h.action for h in out] == [Action.UNMATCHED] and out[0].job is None
    [kept] = await queue.returns.unmatched()
    assert kept.data == data and kept.envelope_to == forged
    assert await suppressed(queue, "ann@example.com") == [(None, Reason.BOUNCED, "bounce:spring")]


async def test_an_address_the_job_never_mailed_is_kept_not_suppressed(queue: Queue) -> None:
    j = job("spring", "ann@example.com")
    await queue.enqueue([j])
    out = await run(queue, dsn("ceo@example.com", j.message_id))
    assert out[0].action is Action.UNMATCHED and "not a recipient" in out[0].reason
    assert await suppressed(queue, "ceo@example.com") == []
    assert await queue.returns.counts() == ReturnCounts()
    assert await queue.returns.unmatched_count() == 1


async def test_what_matches_nothing_is_kept_once_and_counted(queue: Queue) -> None:
    garbage = b"\x00\xffnot mail at all"
    for _ in range(2):
        out = await run(queue, garbage)
        assert [h.action for h in out] == [Action.UNMATCHED] and out[0].address is None
    no_job = dsn("ann@example.com", "<nobody@nowhere.example>")
    assert [h.action for h in await run(queue, no_job)] == [Action.UNMATCHED]
    assert await queue.returns.unmatched_count() == 2
    assert await queue.suppressions.entries() == []


async def test_soft_bounces_suppress_once_the_window_holds_the_limit(queue: Queue) -> None:
    j = job("spring", "full@example.com")
    await queue.enqueue([j])
    policy = SoftBouncePolicy(limit=3, window=7 * DAY)
    times = [T0 - 20 * DAY, T0 - 5 * DAY, T0 - DAY, T0]
    actions = []
    for n, at in enumerate(times):
        data = dsn("full@example.com", j.message_id, status="4.2.2", note=f" #{n}")
        [h] = await run(queue, data, now=at, policy=policy)
        actions.append(h.action)
    # the first falls out of the window of the others: the fourth is the third within it
    assert actions == [Action.COUNTED, Action.COUNTED, Action.COUNTED, Action.SUPPRESSED]
    assert await suppressed(queue, "full@example.com") == [
        (None, Reason.BOUNCED, "soft-bounces-3:spring")
    ]
    assert await queue.returns.counts("spring") == ReturnCounts(soft_bounced=1)


async def test_a_complaint_suppresses_not_spam_is_only_counted(queue: Queue) -> None:
    a, b = job("spring", "ann@example.com"), job("spring", "bob@example.com")
    await queue.enqueue([a, b])
    out = await run(queue, arf("ann@example.com", a.message_id))
    assert out == [Handled("ann@example.com", a.id, Action.SUPPRESSED, recorded=True)]
    assert await suppressed(queue, "ann@example.com") == [
        (None, Reason.COMPLAINED, "complaint:spring")
    ]
    # a redacted recipient: the job's only one
    out = await run(queue, arf("", b.message_id, feedback_type="not-spam"))
    assert out == [Handled("bob@example.com", b.id, Action.COUNTED, recorded=True)]
    assert await suppressed(queue, "bob@example.com") == []
    assert await queue.returns.counts("spring") == ReturnCounts(complained=2)


async def test_an_unsubscribe_request_suppresses_for_the_jobs_list(queue: Queue) -> None:
    j = job("spring", "ann@example.com")
    j.list_name = "news"
    await queue.enqueue([j])
    data = (
        b"From: Ann <ann@example.com>\r\nTo: unsubscribe@news.example\r\n"
        b"Subject: unsubscribe\r\n\r\nplease\r\n"
    )
    report = parse_report(
        data, envelope_to="unsubscribe@news.example", unsubscribe_to=["unsubscribe@news.example"]
    )
    # the request quotes no Message-ID: no job, so the address is suppressed globally
    out = await handle(report, data, store=queue, return_path=RETURN_PATH, now=T0)
    assert out == [Handled("ann@example.com", None, Action.SUPPRESSED)]
    assert await suppressed(queue, "ann@example.com") == [(None, Reason.UNSUBSCRIBED, "mail")]
    # one that names the job: for the job's list
    named = replace(report, recipients=[Bounced("bob@example.com")], message_id=j.message_id)
    out = await handle(named, data + b"2", store=queue, return_path=RETURN_PATH, now=T0)
    assert out == [Handled("bob@example.com", j.id, Action.SUPPRESSED)]
    assert await suppressed(queue, "bob@example.com") == [("news", Reason.UNSUBSCRIBED, "mail")]


@pytest.mark.parametrize("name", ["postfix_01.txt", "dsn_02.txt", "exim_01.txt"])
async def test_real_bounces_for_a_job_queued_here(queue: Queue, name: str) -> None:
    data = (BOUNCES / name).read_bytes()
    report = parse_report(data)
    [bounced] = report.recipients
    j = job("real", bounced.address)
    await queue.enqueue([j])
    out = await run(queue, data, envelope_to=RETURN_PATH.address(j.id))
    if bounced.permanent:
        assert out == [Handled(bounced.address, j.id, Action.SUPPRESSED, recorded=True)]
        assert await queue.returns.counts("real") == ReturnCounts(bounced=1)
    else:
        assert out == [Handled(bounced.address, j.id, Action.COUNTED, recorded=True)]
        assert await queue.returns.counts("real") == ReturnCounts(soft_bounced=1)


def test_the_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="limit"):
        SoftBouncePolicy(limit=0)
